"""Who may see what: the permission matrix from anonymous to superuser, and the
audit trail every look at content leaves."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from chat.models import (
    AuditRecord,
    Conversation,
    Message,
    Output,
)

pytestmark = pytest.mark.django_db


def _who(name: str, request: Any) -> Any:
    return None if name == "anonymous" else request.getfixturevalue(name)


def _get(client: Any, user: Any, url: str) -> Any:
    if user is not None:
        client.force_login(user)
    return client.get(url)


# ---- who may see what ------------------------------------------------------------------

# (user fixture, transcript, export, admin conversation list, admin audit log, usage)


MATRIX = [
    ("anonymous", 302, 302, 302, 302, 302),
    ("other_user", 403, 403, 302, 302, 403),
    ("staff", 403, 403, 403, 403, 200),
    ("reviewer", 200, 200, 200, 403, 200),
    ("superuser", 200, 200, 200, 200, 200),
]


@pytest.mark.parametrize("who,transcript,export,changelist,audit,usage", MATRIX)
def test_permission_matrix(
    client: Any,
    request: Any,
    analysis: Conversation,
    who: str,
    transcript: int,
    export: int,
    changelist: int,
    audit: int,
    usage: int,
) -> None:
    user = _who(who, request)
    image = Output.objects.get(conversation=analysis, image_mime="image/png")
    urls = {
        "transcript": reverse("review:transcript", args=[analysis.id]),
        "image": reverse("review:image", args=[analysis.id, image.pk]),
        "export": reverse("review:export", args=[analysis.id, "jsonl"]),
        "changelist": reverse("admin:chat_conversation_changelist"),
        "messages": reverse("admin:chat_message_changelist"),
        "audit": reverse("admin:chat_auditrecord_changelist"),
        "usage": reverse("review:usage"),
    }
    got = {name: _get(client, user, url).status_code for name, url in urls.items()}
    assert got == {
        "transcript": transcript,
        "image": transcript,
        "export": export,
        "changelist": changelist,
        "messages": changelist,
        "audit": audit,
        "usage": usage,
    }
    # Only the permitted reads left a record, and each names the conversation.
    records = AuditRecord.objects.filter(action=AuditRecord.Action.TRANSCRIPT)
    assert records.count() == (1 if transcript == 200 else 0)
    if transcript == 200:
        assert records.get().conversations == [str(analysis.id)]
        assert records.get().user == user and records.get().actor == user.username


def test_the_admin_home_links_the_reviewer_to_the_work(client, reviewer, superuser, staff):
    client.force_login(reviewer)
    page = client.get(reverse("admin:index")).content.decode()
    assert "?errors=yes&amp;active=yesterday" in page and "flagged__exact=1" in page
    assert reverse("review:usage") in page
    assert reverse("admin:chat_auditrecord_changelist") not in page
    client.force_login(superuser)
    assert reverse("admin:chat_auditrecord_changelist") in client.get("/admin/").content.decode()
    client.force_login(staff)  # staff without the permission: usage only, no log tables
    page = client.get(reverse("admin:index")).content.decode()
    assert reverse("review:usage") in page and "errors=yes" not in page
    assert reverse("admin:chat_message_changelist") not in page


def test_the_model_view_permission_alone_shows_no_content(client, staff, analysis):
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_message", "view_conversation"])
    )
    client.force_login(staff)
    assert client.get(reverse("admin:chat_message_changelist")).status_code == 403
    assert client.get(reverse("review:transcript", args=[analysis.id])).status_code == 403


def test_owners_never_see_reviewer_pages_of_their_own_conversation(client, owner, analysis):
    client.force_login(owner)
    assert client.get(reverse("review:transcript", args=[analysis.id])).status_code == 403


def test_admin_reads_and_searches_are_recorded(client, reviewer, analysis):
    client.force_login(reviewer)
    message = Message.objects.filter(conversation=analysis).first()
    assert message is not None
    client.get(reverse("admin:chat_message_change", args=[message.pk]))
    client.get(reverse("admin:chat_conversation_changelist"), {"q": "df.shape"})
    client.get(reverse("admin:chat_conversation_changelist"))  # no search: still shows titles
    rows = list(AuditRecord.objects.order_by("id").values("action", "conversations", "detail"))
    assert rows == [
        {
            "action": "log_row",
            "conversations": [str(analysis.id)],
            "detail": {"model": "message", "id": str(message.pk)},
        },
        {
            "action": "search",
            "conversations": [str(analysis.id)],
            "detail": {"model": "conversation", "query": "df.shape"},
        },
        {
            "action": "log_row",
            "conversations": [str(analysis.id)],
            "detail": {"model": "conversation", "view": "list"},
        },
    ]


def test_the_conversation_admin_page_is_the_audited_transcript(client, reviewer, analysis):
    client.force_login(reviewer)
    response = client.get(reverse("admin:chat_conversation_change", args=[analysis.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("review:transcript", args=[analysis.id])


def test_nobody_can_change_or_delete_the_audit_log_or_the_logs(client, superuser, analysis):
    client.force_login(superuser)
    client.get(reverse("review:transcript", args=[analysis.id]))
    record = AuditRecord.objects.get()
    for url in (
        reverse("admin:chat_auditrecord_delete", args=[record.pk]),
        reverse("admin:chat_message_delete", args=[Message.objects.first().pk]),  # type: ignore[union-attr]
        reverse("admin:chat_conversation_delete", args=[analysis.pk]),
    ):
        assert client.post(url, {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.filter(pk=record.pk).exists()
    page = client.get(reverse("admin:chat_auditrecord_changelist")).content.decode()
    assert "root" in page and "transcript" in page
