"""What reviewers look for: conversations with errors, ratings, days, and the
usage overview (counts per user and day, never content)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from chat.actions import quotas
from chat.models import Execution, Feedback, Output, Turn

# How an execution can go wrong, as the reviewer filters and counts it.
FAILED_EXECUTIONS = (
    Execution.Status.ERROR,
    Execution.Status.TIMEOUT,
    Execution.Status.DIED,
    Execution.Status.LOST,
    Execution.Status.FAILED,
)
FAILED_TURNS = (Turn.Status.FAILED, Turn.Status.INTERRUPTED)


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


@dataclass
class QuotaRow:
    username: str
    uses: list[quotas.QuotaUse]


def quota_rows(rows: Iterable[UsageRow], user_id: int | None = None) -> list[QuotaRow]:
    """Each user of the period (at most 200), their use of each quota now."""
    names = {r.user_id: r.username for r in rows}
    if user_id is not None and user_id not in names:
        user = get_user_model().objects.filter(pk=user_id).first()
        if user is not None:
            names[user_id] = user.get_username()
    chosen = sorted(names, key=lambda uid: names[uid])[:200]
    uses = quotas.usage_against_quota(chosen)
    return [QuotaRow(names[uid], uses[uid]) for uid in chosen]


def top_error_types(rows: Iterable[UsageRow], limit: int = 10) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for r in rows:
        for name, n in r.error_types.items():
            totals[name] = totals.get(name, 0) + n
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
