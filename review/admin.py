"""The admin for conversation logs: read-only, content behind the review
permission, every look at content recorded in the audit trail: detail and
history pages, list pages (which show titles, text and code) and their searches
and field filters."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ALL_VAR, ERROR_FLAG, ORDER_VAR, PAGE_VAR, SEARCH_VAR
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Length
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from chat.agent.text import strip_ansi
from chat.exports import settings_words
from chat.models import (
    AuditRecord,
    Conversation,
    Execution,
    Feedback,
    Message,
    Output,
    ReviewNote,
    Turn,
    WebRequest,
    WorkspaceFile,
)
from review import actions, queries
from review.admin_filters import (
    DeletedByOwnerFilter,
    HasErrorsFilter,
    LastActivityFilter,
    RatingFilter,
    SupersededFilter,
    TurnStatusFilter,
    writer_filters,
)
from review.audit import record
from review.downloads import export_response
from review.permissions import can_export, can_review
from review.transcript import writer_label

admin.site.site_header = "CodeAct Web administration"
admin.site.site_title = "CodeAct Web"
admin.site.index_title = "Administration"

PREVIEW = 120
# Query-string parameters of a list page that choose no rows (paging, sorting, display).
# ("_popup", "_to_field" and "_facets" are Django's IS_POPUP_VAR, TO_FIELD_VAR, IS_FACETS_VAR.)
NOT_CRITERIA = {
    ALL_VAR, ERROR_FLAG, ORDER_VAR, PAGE_VAR, SEARCH_VAR,
    "_popup", "_to_field", "_facets", "_changelist_filters",
}  # fmt: skip


def _preview(text: str, limit: int = PREVIEW) -> str:
    """One line of plain text: ANSI escapes removed (the admin escapes the HTML)."""
    flat = " ".join(strip_ansi(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Logs are evidence: nobody adds, edits or deletes them here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LogAdmin(ReadOnlyAdmin):
    """Rows holding what users wrote or ran: visible with the review permission
    only (staff status or the model's own view permission is not enough), and
    every detail page or search is recorded."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_review(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_review(request.user)

    def conversation_of(self, obj: Any) -> Any:
        return getattr(obj, "conversation_id", None)

    @admin.display(description="Conversation")
    def conversation_link(self, obj: Any) -> str:
        """The row's conversation, linked to its (audited) transcript."""
        url = reverse("review:transcript", kwargs={"conversation_id": obj.conversation_id})
        return format_html('<a href="{}">{}</a>', url, obj.conversation.title)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        if response.status_code == 200 and "cl" in context:
            self._record_list(request, context["cl"])
        return response

    def _record_list(self, request: HttpRequest, changelist: Any) -> None:
        """A list page shows content (titles, text, code): record which
        conversations it showed, and its search and field filters as a search."""
        query = request.GET.get(SEARCH_VAR, "").strip()
        filters = {
            key: value[:200] for key, value in request.GET.items() if key not in NOT_CRITERIA
        }
        found = {self.conversation_of(row) for row in changelist.result_list}
        if not (query or filters or found):
            return
        detail: dict[str, Any] = {"model": self.model._meta.model_name}
        if query:
            detail["query"] = query[:500]
        if filters:
            detail["filters"] = filters
        if not (query or filters):
            detail["view"] = "list"
        action = AuditRecord.Action.SEARCH if query or filters else AuditRecord.Action.LOG_ROW
        ids = sorted(str(i) for i in found if i)
        record(request.user, action, ids, via="admin", detail=detail, request=request)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().history_view(request, object_id, extra_context)
        if response.status_code == 200:
            self._record_row(request, object_id, view="history")
        return response

    def _record_row(self, request: HttpRequest, object_id: str, **extra: str) -> None:
        obj = self.get_object(request, object_id)
        conversation = self.conversation_of(obj) if obj is not None else None
        record(
            request.user,
            AuditRecord.Action.LOG_ROW,
            [conversation] if conversation else [],
            via="admin",
            detail={"model": self.model._meta.model_name, "id": str(object_id), **extra},
            request=request,
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200:
            self._record_row(request, object_id)
        return response


def _count(model: Any, **filters: Any) -> Coalesce:
    """A correlated COUNT per conversation (no join fan-out across counts)."""
    rows = (
        model.objects.filter(conversation=OuterRef("pk"), **filters)
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


# ---- conversations ------------------------------------------------------------------


@admin.register(Conversation)
class ConversationAdmin(LogAdmin):
    list_display = (
        "transcript_link",
        "owner",
        "model",
        "turn_count",
        "execution_count",
        "error_count",
        "rating",
        "flagged",
        "updated_at",
        "deleted_at",
    )
    list_filter = (
        ("owner", admin.RelatedOnlyFieldListFilter),
        "model",
        LastActivityFilter,
        HasErrorsFilter,
        TurnStatusFilter,
        "flagged",
        RatingFilter,
        DeletedByOwnerFilter,
        # Which model answered: the key above can stand for another model by now.
        *writer_filters("conversation", "(any reply)"),
    )
    search_fields = ("title", "owner__username", "messages__content", "executions__code")
    search_help_text = "Searches titles, owners, message text and code; searches are audited."
    date_hierarchy = "updated_at"
    list_per_page = 50
    actions = ["flag", "unflag", "export_json", "export_ipynb", "export_jsonl"]

    def conversation_of(self, obj: Any) -> Any:
        return obj.pk

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        queryset: QuerySet[Conversation] = super().get_queryset(request)
        return queryset.select_related("owner").annotate(
            n_turns=_count(Turn),
            n_executions=_count(Execution),
            n_errors=_count(Execution, status__in=queries.FAILED_EXECUTIONS),
            n_up=_count(Feedback, rating=Feedback.Rating.UP),
            n_down=_count(Feedback, rating=Feedback.Rating.DOWN),
        )

    @admin.display(description="Conversation", ordering="title")
    def transcript_link(self, obj: Conversation) -> str:
        url = reverse("review:transcript", kwargs={"conversation_id": obj.pk})
        return format_html('<a href="{}">{}</a>', url, obj.title)

    @admin.display(description="Turns", ordering="n_turns")
    def turn_count(self, obj: Any) -> int:
        return int(obj.n_turns)

    @admin.display(description="Cells", ordering="n_executions")
    def execution_count(self, obj: Any) -> int:
        return int(obj.n_executions)

    @admin.display(description="Errors", ordering="n_errors")
    def error_count(self, obj: Any) -> int:
        return int(obj.n_errors)

    @admin.display(description="Rating")
    def rating(self, obj: Any) -> str:
        parts = [f"{n}\u00a0{word}" for word, n in (("good", obj.n_up), ("bad", obj.n_down)) if n]
        return ", ".join(parts) or "–"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The transcript is the conversation's page (and records the view).
        if not self.has_view_permission(request):
            return super().change_view(request, object_id, form_url, extra_context)
        return HttpResponseRedirect(
            reverse("review:transcript", kwargs={"conversation_id": object_id})
        )

    def has_export_permission(self, request: HttpRequest) -> bool:
        return can_export(request.user)

    @admin.action(description="Flag selected conversations")
    def flag(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        n = actions.do_flag(queryset, request.user, True, via="admin", request=request)  # type: ignore[arg-type]
        self.message_user(request, f"Flagged {n} conversation(s).", messages.SUCCESS)

    @admin.action(description="Remove the flag")
    def unflag(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        n = actions.do_flag(queryset, request.user, False, via="admin", request=request)  # type: ignore[arg-type]
        self.message_user(request, f"Removed the flag from {n} conversation(s).", messages.SUCCESS)

    @admin.action(description="Export as JSON (everything)", permissions=["export"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return export_response(request, queryset, "json", via="admin")

    @admin.action(description="Export as Jupyter notebooks", permissions=["export"])
    def export_ipynb(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return export_response(request, queryset, "ipynb", via="admin")

    @admin.action(description="Export as CodeAct training JSONL", permissions=["export"])
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return export_response(request, queryset, "jsonl", via="admin")


# ---- the rows of a conversation --------------------------------------------------


@admin.register(Turn)
class TurnAdmin(LogAdmin):
    list_display = (
        "id",
        "conversation_link",
        "owner",
        "kind",
        "status",
        "model",
        "answered_with",
        "error_code",
        "created_at",
        "seconds",
    )
    list_filter = (
        "kind",
        "status",
        "model",
        *writer_filters("turn", "(any reply)"),
        "temperature",
        "max_tokens",
        "max_executions",
        "error_code",
        "created_at",
    )
    search_fields = ("conversation__title", "error", "user_message__content")
    date_hierarchy = "created_at"
    list_select_related = ("conversation__owner",)
    exclude = ("user_message",)
    readonly_fields = ("question",)

    @admin.display(description="Settings")
    def answered_with(self, obj: Turn) -> str:
        """What the model answered with; a dash for a user's cell or an older turn."""
        return ", ".join(settings_words(obj)) or "–"

    @admin.display(description="Owner", ordering="conversation__owner__username")
    def owner(self, obj: Turn) -> str:
        return obj.conversation.owner.get_username()

    @admin.display(description="Seconds")
    def seconds(self, obj: Turn) -> str:
        if obj.finished_at and (obj.started_at or obj.created_at):
            return f"{(obj.finished_at - (obj.started_at or obj.created_at)).total_seconds():.1f}"
        return "–"

    @admin.display(description="Question")
    def question(self, obj: Turn) -> str:
        return obj.user_message.content


@admin.register(Message)
class MessageAdmin(LogAdmin):
    list_display = (
        "id",
        "conversation_link",
        "role",
        "status",
        "final",
        "text",
        "written_by",
        "created_at",
    )
    list_filter = (
        "role",
        "status",
        "final",
        SupersededFilter,
        *writer_filters(),
        "created_at",
    )
    search_fields = ("content",)
    date_hierarchy = "created_at"
    list_select_related = ("conversation",)
    exclude = ("turn",)

    @admin.display(description="Text")
    def text(self, obj: Message) -> str:
        return _preview(obj.content)

    @admin.display(description="Written by")
    def written_by(self, obj: Message) -> str:
        """A reply's model name · endpoint · action format, worded as the transcript
        words them; a dash for the user's messages and notices."""
        return writer_label(obj) if obj.role == Message.Role.ASSISTANT else "–"


@admin.register(Execution)
class ExecutionAdmin(LogAdmin):
    list_display = (
        "id",
        "conversation_link",
        "number",
        "origin",
        "status",
        "code_preview",
        "duration",
        "execution_count",
        "output_chars",
        "sandbox_id",
        "started_at",
    )
    list_filter = ("origin", "status", "kernel_restarted", "started_at")
    search_fields = ("code", "detail")
    date_hierarchy = "started_at"
    list_select_related = ("conversation", "sandbox")
    exclude = ("message", "turn", "sandbox")
    readonly_fields = ("sandbox_id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        queryset: QuerySet[Execution] = super().get_queryset(request)
        return queryset.annotate(text_chars=Coalesce(Sum(Length("outputs__text")), 0))

    @admin.display(description="Code")
    def code_preview(self, obj: Execution) -> str:
        return _preview(obj.code, 80)

    @admin.display(description="Output chars", ordering="text_chars")
    def output_chars(self, obj: Any) -> int:
        return int(obj.text_chars)

    @admin.display(description="Sandbox")
    def sandbox_id(self, obj: Execution) -> str:
        return obj.sandbox.container_id[:12] if obj.sandbox else "–"


@admin.register(Output)
class OutputAdmin(LogAdmin):
    list_display = ("id", "execution", "index", "output_type", "name", "text_preview", "image_mime")
    list_filter = ("output_type", "name", "image_mime")
    search_fields = ("text",)
    list_select_related = ("execution",)
    exclude = ("image", "execution", "conversation", "text")
    readonly_fields = ("plain_text", "image_size")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Output]:
        return super().get_queryset(request).defer("image")

    @admin.display(description="Text")
    def text_preview(self, obj: Output) -> str:
        return _preview(obj.text or str(obj.data.get("text/plain", "")))

    @admin.display(description="Text")
    def plain_text(self, obj: Output) -> str:
        return strip_ansi(obj.text)

    @admin.display(description="Image bytes")
    def image_size(self, obj: Output) -> int:
        return len(bytes(obj.image or b""))


@admin.register(WebRequest)
class WebRequestAdmin(LogAdmin):
    """Every request a sandbox made through the egress proxy (README, "Web access")."""

    list_display = (
        "at",
        "conversation_link",
        "execution_id",
        "method",
        "host",
        "port",
        "outcome",
        "reply_bytes",
        "duration_ms",
    )
    list_filter = ("refused", "outcome", "method", "port", "at")
    search_fields = ("host", "url", "server")
    date_hierarchy = "at"
    list_select_related = ("conversation",)
    exclude = ("conversation", "execution")
    readonly_fields = ("conversation_link", "execution_id")


@admin.register(WorkspaceFile)
class WorkspaceFileAdmin(LogAdmin):
    list_display = ("path", "conversation_link", "origin", "size", "sha256", "updated_at")
    list_filter = ("origin", "updated_at")
    search_fields = ("path", "sha256")
    list_select_related = ("conversation",)
    exclude = ("content", "execution", "sandbox", "conversation")

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkspaceFile]:
        return super().get_queryset(request).defer("content")


@admin.register(Feedback)
class FeedbackAdmin(LogAdmin):
    list_display = ("id", "conversation_link", "user", "rating", "comment_preview", "updated_at")
    list_filter = ("rating", "updated_at")
    search_fields = ("comment",)
    list_select_related = ("conversation", "user")
    exclude = ("message", "conversation")

    @admin.display(description="Comment")
    def comment_preview(self, obj: Feedback) -> str:
        return _preview(obj.comment)


@admin.register(ReviewNote)
class ReviewNoteAdmin(LogAdmin):
    list_display = ("id", "conversation_link", "author", "text_preview", "created_at")
    list_select_related = ("conversation", "author")
    search_fields = ("text",)
    exclude = ("conversation",)

    @admin.display(description="Note")
    def text_preview(self, obj: ReviewNote) -> str:
        return _preview(obj.text)


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    """Who read or exported what: superusers only, and nobody can change it."""

    list_display = ("created_at", "actor", "action", "count", "via", "ip", "details")
    list_filter = ("action", "via", "created_at")
    search_fields = ("actor", "conversations")
    date_hierarchy = "created_at"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    @admin.display(description="Details")
    def details(self, obj: AuditRecord) -> str:
        shown = ", ".join(obj.conversations[:3]) + (" …" if obj.count > 3 else "")
        extra = ", ".join(f"{k}={v}" for k, v in obj.detail.items())
        return _preview(f"{shown} {extra}".strip(), 160)
