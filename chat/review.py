"""Review of conversation logs: permissions, the audit trail, feedback, flags,
the reviewer's conversation queries and the usage overview.

Reading another user's conversation (a transcript, a log row in the admin, a
search over message text) and exporting logs each need a dedicated
permission; staff status alone shows no content. Every such read and export
leaves an `AuditRecord`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission, User
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest
from django.utils import timezone

from chat.actions import ActionError
from chat.models import (
    AuditRecord,
    Conversation,
    Execution,
    Feedback,
    Message,
    Output,
    ReviewNote,
    Turn,
)

REVIEW = "chat.review_conversation"
EXPORT = "chat.export_conversation"
REVIEWERS_GROUP = "Reviewers"
COMMENT_MAX = 2000
NOTE_MAX = 5000

# How an execution can go wrong, as the reviewer filters and counts it.
FAILED_EXECUTIONS = (
    Execution.Status.ERROR,
    Execution.Status.TIMEOUT,
    Execution.Status.DIED,
    Execution.Status.LOST,
    Execution.Status.FAILED,
)
FAILED_TURNS = (Turn.Status.FAILED, Turn.Status.INTERRUPTED)

AnyUser = AbstractBaseUser | AnonymousUser  # what request.user is


def _has(user: AnyUser, perm: str) -> bool:
    return bool(
        isinstance(user, User) and user.is_authenticated and user.is_active and user.has_perm(perm)
    )


def can_review(user: AnyUser) -> bool:
    return _has(user, REVIEW)


def can_export(user: AnyUser) -> bool:
    return _has(user, EXPORT)


def ensure_reviewers_group(**_: Any) -> None:
    """The Reviewers group holds both permissions; run after every migrate."""
    perms = Permission.objects.filter(
        content_type__app_label="chat",
        codename__in=["review_conversation", "export_conversation"],
    )
    if perms.count() < 2:  # permissions are created by the same post_migrate signal
        return
    group, _created = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    group.permissions.add(*perms)


def reviewers_group() -> Group:
    ensure_reviewers_group()
    return Group.objects.get(name=REVIEWERS_GROUP)


# ---- audit ---------------------------------------------------------------------


def _client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    actor: AnyUser | str,
    action: str,
    conversations: Iterable[Any] = (),
    *,
    via: str,
    detail: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> AuditRecord:
    """Write one audit record. `actor` is a user, or a name for command-line runs."""
    ids = [str(getattr(c, "pk", c)) for c in conversations]
    user = actor if isinstance(actor, User) else None
    name = actor if isinstance(actor, str) else actor.get_username()
    return AuditRecord.objects.create(
        user=user,
        actor=name,
        action=action,
        conversations=ids,
        count=len(ids),
        detail=detail or {},
        via=via,
        ip=_client_ip(request),
    )


# ---- feedback, flags, notes ----------------------------------------------------------


def do_rate(
    conversation: Conversation, user: User, message_id: Any, rating: Any, comment: Any
) -> Feedback | None:
    """Rate an assistant answer (1 or -1, None clears the rating) with an optional comment."""
    try:
        message = conversation.messages.get(pk=int(message_id), role=Message.Role.ASSISTANT)
    except (Message.DoesNotExist, TypeError, ValueError):
        raise ActionError("no_message", "There is no such answer to rate.") from None
    if message.status == Message.Status.STREAMING:
        raise ActionError("still_streaming", "Wait for the answer to finish before rating it.")
    if rating is None:
        Feedback.objects.filter(message=message, user=user).delete()
        return None
    if rating not in (Feedback.Rating.UP, Feedback.Rating.DOWN) or isinstance(rating, bool):
        raise ActionError("invalid_rating", "A rating is 1 (good) or -1 (bad).")
    if not isinstance(comment, str):
        comment = ""
    if len(comment) > COMMENT_MAX:
        raise ActionError("comment_too_long", f"Keep the comment under {COMMENT_MAX} characters.")
    feedback, _created = Feedback.objects.update_or_create(
        message=message,
        user=user,
        defaults={"conversation": conversation, "rating": rating, "comment": comment.strip()},
    )
    return feedback


def feedback_by_message(conversation: Conversation, user: User) -> dict[str, Any]:
    rows = Feedback.objects.filter(conversation=conversation, user=user)
    return {str(f.message_id): {"rating": f.rating, "comment": f.comment} for f in rows}


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
    text = text.strip()
    if not text:
        raise ActionError("empty_note", "Write something in the note first.")
    if len(text) > NOTE_MAX:
        raise ActionError("note_too_long", f"Keep a note under {NOTE_MAX} characters.")
    with transaction.atomic():
        note = ReviewNote.objects.create(conversation=conversation, author=reviewer, text=text)
        record(reviewer, AuditRecord.Action.NOTE, [conversation], via=via, request=request)
    return note


# ---- what reviewers filter on -----------------------------------------------------


def has_errors() -> Q:
    """Conversations where code failed or a turn ended badly."""
    return Q(
        Exists(Execution.objects.filter(conversation=OuterRef("pk"), status__in=FAILED_EXECUTIONS))
    ) | Q(Exists(Turn.objects.filter(conversation=OuterRef("pk"), status__in=FAILED_TURNS)))


def rating_filter(value: str) -> Q:
    """`up`: rated good and never bad; `down`: rated bad at least once;
    `rated` / `unrated`: any rating or none."""
    up = Exists(Feedback.objects.filter(conversation=OuterRef("pk"), rating=Feedback.Rating.UP))
    down = Exists(Feedback.objects.filter(conversation=OuterRef("pk"), rating=Feedback.Rating.DOWN))
    if value == "up":
        return Q(up) & ~Q(down)
    if value == "down":
        return Q(down)
    if value == "rated":
        return Q(up) | Q(down)
    if value == "unrated":
        return ~Q(up) & ~Q(down)
    raise ValueError(f"unknown rating filter {value!r}: use up, down, rated or unrated")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = timezone.make_aware(datetime.combine(day, time.min))
    return start, start + timedelta(days=1)


# ---- usage overview -----------------------------------------------------------------


@dataclass
class UsageRow:
    day: date
    user_id: int
    username: str
    turns: int = 0
    failed_turns: int = 0
    executions: int = 0
    errors: int = 0
    timeouts: int = 0
    sandbox_seconds: float = 0.0
    error_types: dict[str, int] = field(default_factory=dict)

    @property
    def top_errors(self) -> list[tuple[str, int]]:
        return sorted(self.error_types.items(), key=lambda kv: (-kv[1], kv[0]))[:3]


def usage(start: date, end: date, user_id: int | None = None) -> list[UsageRow]:
    """Per user and day (by the turn's or execution's start), newest day first.

    `sandbox_seconds` is the wall time code ran in sandboxes. Error types are
    the exception names of failed cells (never their messages, which can hold
    user data) of cells that ended in an error, plus Timeout, KernelDied, Lost
    and NotRun for executions that ended without a Python exception; so the
    error types of a row add up to its errors.
    """
    since, _ = day_bounds(start)
    _, until = day_bounds(end)
    rows: dict[tuple[date, int], UsageRow] = {}

    def row(day: date, uid: int, name: str) -> UsageRow:
        key = (day, uid)
        if key not in rows:
            rows[key] = UsageRow(day=day, user_id=uid, username=name)
        return rows[key]

    turns = Turn.objects.filter(created_at__gte=since, created_at__lt=until)
    executions = Execution.objects.filter(started_at__gte=since, started_at__lt=until)
    outputs = Output.objects.filter(
        output_type=Output.Type.ERROR,
        execution__status=Execution.Status.ERROR,
        execution__started_at__gte=since,
        execution__started_at__lt=until,
    )
    if user_id is not None:
        turns = turns.filter(conversation__owner_id=user_id)
        executions = executions.filter(conversation__owner_id=user_id)
        outputs = outputs.filter(conversation__owner_id=user_id)

    for t in (
        turns.annotate(day=TruncDate("created_at"))
        .values("day", "conversation__owner_id", "conversation__owner__username")
        .annotate(n=Count("id"), failed=Count("id", filter=Q(status__in=FAILED_TURNS)))
    ):
        r = row(t["day"], t["conversation__owner_id"], t["conversation__owner__username"])
        r.turns, r.failed_turns = t["n"], t["failed"]

    for e in (
        executions.annotate(day=TruncDate("started_at"))
        .values("day", "conversation__owner_id", "conversation__owner__username")
        .annotate(
            n=Count("id"),
            errors=Count("id", filter=Q(status__in=FAILED_EXECUTIONS)),
            timeouts=Count("id", filter=Q(status=Execution.Status.TIMEOUT)),
            seconds=Sum("duration"),
        )
    ):
        r = row(e["day"], e["conversation__owner_id"], e["conversation__owner__username"])
        r.executions, r.errors, r.timeouts = e["n"], e["errors"], e["timeouts"]
        r.sandbox_seconds = float(e["seconds"] or 0.0)

    no_exception = {
        Execution.Status.TIMEOUT: "Timeout",
        Execution.Status.DIED: "KernelDied",
        Execution.Status.LOST: "Lost",
        Execution.Status.FAILED: "NotRun",
    }
    for failed in (
        executions.filter(status__in=list(no_exception))
        .annotate(day=TruncDate("started_at"))
        .values("day", "status", "conversation__owner_id", "conversation__owner__username")
        .annotate(n=Count("id"))
    ):
        r = row(
            failed["day"], failed["conversation__owner_id"], failed["conversation__owner__username"]
        )
        name = no_exception[Execution.Status(failed["status"])]
        r.error_types[name] = r.error_types.get(name, 0) + failed["n"]

    for o in (
        outputs.annotate(day=TruncDate("execution__started_at"))
        .values("day", "data__ename", "conversation__owner_id", "conversation__owner__username")
        .annotate(n=Count("id"))
    ):
        r = row(o["day"], o["conversation__owner_id"], o["conversation__owner__username"])
        name = str(o["data__ename"] or "Error")[:80]
        r.error_types[name] = r.error_types.get(name, 0) + o["n"]

    return sorted(rows.values(), key=lambda r: (-r.day.toordinal(), r.username))


def top_error_types(rows: Iterable[UsageRow], limit: int = 10) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for r in rows:
        for name, n in r.error_types.items():
            totals[name] = totals.get(name, 0) + n
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
