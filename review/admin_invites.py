"""The admin page for sign-up invites (CODEACT_SIGNUP=invite): create one, copy
its link, revoke it. An invite admits one sign-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from chat.models import Invite


def invite_state(invite: Invite) -> str:
    if invite.used_at is not None:
        return "used"
    if invite.revoked_at is not None:
        return "revoked"
    if not invite.usable():
        return "expired"
    return "open"


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    fields = ["note", "expires_at"]
    list_filter = ["created_at"]
    search_fields = ["note"]
    actions = ["revoke"]

    def get_list_display(self, request: HttpRequest) -> Any:
        return [
            "note",
            self._link_column(request),
            "state",
            "created_by",
            "created_at",
            "expires_at",
            "used_by",
            "used_at",
        ]

    def _link_column(self, request: HttpRequest) -> Callable[[Invite], str]:
        """The link to hand out, absolute for the host the admin is using."""

        def link(invite: Invite) -> str:
            if invite_state(invite) != "open":
                return "–"
            url = request.build_absolute_uri(f"{reverse('signup')}?invite={invite.token}")
            return format_html("<code>{}</code>", url)

        link.short_description = "Invite link"  # type: ignore[attr-defined]
        return link

    @admin.display(description="State")
    def state(self, invite: Invite) -> str:
        return invite_state(invite)

    def save_model(self, request: HttpRequest, obj: Invite, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: Invite, *args: Any) -> Any:
        url = request.build_absolute_uri(f"{reverse('signup')}?invite={obj.token}")
        messages.info(request, f"Invite link (single use): {url}")
        return super().response_add(request, obj, *args)

    @admin.action(description="Revoke the selected invites")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invite]) -> None:
        count = queryset.filter(used_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        messages.success(request, f"Revoked {count} invite{'s' if count != 1 else ''}.")
