"""A reviewer's marks on a conversation: flags and notes (the owner never sees them).
Each is written together with its audit record."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from chat.actions.errors import ActionError
from chat.models import AuditRecord, Conversation, ReviewNote
from review.audit import record

NOTE_MAX = 5000


def do_flag(
    conversations: QuerySet[Conversation],
    reviewer: User,
    flagged: bool,
    via: str,
    request: HttpRequest | None = None,
) -> int:
    """Flag or unflag conversations; does not touch their last-activity time."""
    ids = list(conversations.values_list("pk", flat=True))
    with transaction.atomic():
        count = Conversation.objects.filter(pk__in=ids).update(
            flagged=flagged,
            flagged_at=timezone.now() if flagged else None,
            flagged_by=reviewer if flagged else None,
        )
        record(
            reviewer,
            AuditRecord.Action.FLAG,
            ids,
            via=via,
            detail={"flagged": flagged},
            request=request,
        )
    return count


def do_add_note(
    conversation: Conversation,
    reviewer: User,
    text: str,
    via: str,
    request: HttpRequest | None = None,
) -> ReviewNote:
    """Leave a note on a conversation for other reviewers."""
    text = text.strip()
    if not text:
        raise ActionError("empty_note", "Write something in the note first.")
    if len(text) > NOTE_MAX:
        raise ActionError("note_too_long", f"Keep a note under {NOTE_MAX} characters.")
    with transaction.atomic():
        note = ReviewNote.objects.create(conversation=conversation, author=reviewer, text=text)
        record(reviewer, AuditRecord.Action.NOTE, [conversation], via=via, request=request)
    return note
