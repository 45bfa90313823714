"""Per-user quotas: what one account may hold or start, so that no user can
starve the others. Every limit is a setting; 0 means unlimited.

The checks run on the web side, in the actions, before anything is stored. A
refusal is an ActionError whose message names the limit, the number, and when
it frees up. Turn checks run under a lock on the user's row (`lock_user`), so
two sends at the same instant are counted one after the other and cannot both
pass the concurrent-turns limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, IntegerField, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from chat import live
from chat.actions.errors import ActionError
from chat.agent.text import human_size
from chat.models import Conversation, Message, Turn, WorkspaceFile

log = logging.getLogger(__name__)

MiB = 1 << 20


def _at(moment: datetime) -> str:
    """A time of day as the user reads it, with its zone (the server's TIME_ZONE)."""
    local = timezone.localtime(moment)
    when = local.strftime("%H:%M %Z")
    if local.date() != timezone.localdate():
        when += local.strftime(" on %Y-%m-%d")
    return when


def _day_start() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


# ---- conversations and stored bytes ----------------------------------------------


def check_new_conversation(user_id: int) -> None:
    limit = settings.CODEACT_QUOTA_CONVERSATIONS
    if not limit:
        return
    have = Conversation.objects.visible().filter(owner_id=user_id).count()
    if have >= limit:
        raise ActionError(
            "quota_conversations",
            f"You have {have:,} conversations, the most one account may keep "
            f"({limit:,}). Delete one to start another.",
        )


def stored_bytes(user_id: int) -> int:
    """The bytes of the files in the user's conversations (those they can still see)."""
    total = WorkspaceFile.objects.filter(
        conversation__owner_id=user_id, conversation__deleted_at__isnull=True
    ).aggregate(n=Sum("size"))["n"]
    return int(total or 0)


def check_stored_bytes(user_id: int, incoming: int) -> None:
    """Refuse `incoming` more bytes when the user's files would pass their quota."""
    limit = settings.CODEACT_QUOTA_STORED_MB * MiB
    if not limit:
        return
    have = stored_bytes(user_id)
    if have + incoming > limit:
        raise ActionError(
            "quota_stored_bytes",
            f"Your files take {human_size(have)} of the {human_size(limit)} one account may "
            f"store; {human_size(incoming)} more would pass it. "
            "Delete files or conversations to free space.",
        )


# ---- turns: how many at once, per hour, tokens per day -------------------------------


def lock_user(user_id: int) -> None:
    """Serialize quota checks of one user (inside the caller's transaction)."""
    list(get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk"))


def turn_counts(user_id: int, since: datetime) -> dict[str, int]:
    """Turns of the user queued or running now, and started since `since`."""
    active = Q(status__in=Turn.ACTIVE)
    recent = Q(created_at__gte=since)
    return Turn.objects.filter(Q(conversation__owner_id=user_id) & (active | recent)).aggregate(
        active=Count("id", filter=active), recent=Count("id", filter=recent)
    )


def _tokens() -> Any:
    """A reply's model tokens (prompt and completion) from its stored usage."""

    def key(name: str) -> Any:
        return Coalesce(Cast(KeyTextTransform(name, "usage"), IntegerField()), 0)

    return key("prompt_tokens") + key("completion_tokens")


def tokens_since(user_id: int, since: datetime) -> int:
    """Model tokens of the user's replies since `since`."""
    total = Message.objects.filter(
        conversation__owner_id=user_id, created_at__gte=since, usage__isnull=False
    ).aggregate(n=Sum(_tokens()))["n"]
    return int(total or 0)


def turn_quotas_enabled() -> bool:
    return bool(
        settings.CODEACT_QUOTA_CONCURRENT_TURNS
        or settings.CODEACT_QUOTA_TURNS_PER_HOUR
        or settings.CODEACT_QUOTA_TOKENS_PER_DAY
    )


def check_new_turn(user_id: int) -> None:
    """Refuse a new turn past a turn quota. Call inside a transaction; takes the
    user's row lock first."""
    if not turn_quotas_enabled():
        return
    concurrent = settings.CODEACT_QUOTA_CONCURRENT_TURNS
    per_hour = settings.CODEACT_QUOTA_TURNS_PER_HOUR
    per_day = settings.CODEACT_QUOTA_TOKENS_PER_DAY
    lock_user(user_id)
    hour_ago = timezone.now() - timedelta(hours=1)
    counts = turn_counts(user_id, hour_ago)
    if concurrent and counts["active"] >= concurrent:
        raise ActionError(
            "quota_concurrent_turns",
            f"You already have {counts['active']} answers queued or running, the most at "
            f"once ({concurrent}). Send this when one of them finishes.",
        )
    if per_hour and counts["recent"] >= per_hour:
        oldest = (
            Turn.objects.filter(conversation__owner_id=user_id, created_at__gte=hour_ago)
            .order_by("created_at")
            .values_list("created_at", flat=True)[counts["recent"] - per_hour]
        )
        raise ActionError(
            "quota_turns_per_hour",
            f"You have started {counts['recent']} answers in the last hour, the limit is "
            f"{per_hour} an hour. You can send again at {_at(oldest + timedelta(hours=1))}.",
        )
    if per_day:
        used = tokens_since(user_id, _day_start())
        if used >= per_day:
            raise ActionError(
                "quota_tokens_per_day",
                f"The model has used {used:,} tokens for you today, the daily limit is "
                f"{per_day:,}. It frees up at midnight, {_at(_day_start() + timedelta(days=1))}.",
            )


# ---- websocket resyncs -------------------------------------------------------------


def check_resume(user_id: int) -> None:
    """At most CODEACT_QUOTA_RESUMES `resume` frames (each a full read of rows) per user
    per window, counted in Redis across sockets and web processes. Without Redis
    the check lets the frame through: a resync is what a client needs after a fault."""
    limit = settings.CODEACT_QUOTA_RESUMES
    if not limit:
        return
    window = settings.CODEACT_QUOTA_RESUME_WINDOW
    slot = int(time.time() // window)
    key = f"{settings.CHANNEL_PREFIX}:quota:resume:{user_id}:{slot}"
    try:
        pipe = live.redis_client().pipeline()
        pipe.incr(key)
        pipe.expire(key, window * 2)
        count = int(pipe.execute()[0])
    except Exception as exc:  # redis down: do not refuse resyncs
        log.warning("resume quota not checked: %r", exc)
        return
    if count > limit:
        wait = max(1, int((slot + 1) * window - time.time()) + 1)
        raise ActionError(
            "quota_resumes",
            f"Too many resyncs: at most {limit} every {window} seconds. "
            f"Try again in {wait} second{'s' if wait != 1 else ''}.",
        )


# ---- staff: usage against quota -------------------------------------------------------


@dataclass
class QuotaUse:
    name: str
    used: int
    limit: int  # 0: unlimited
    unit: str = ""

    @property
    def label(self) -> str:
        if self.unit == "bytes":
            used, limit = human_size(self.used), human_size(self.limit)
        else:
            used, limit = f"{self.used:,}", f"{self.limit:,}"
        return f"{used} of {limit}" if self.limit else f"{used} (no limit)"

    @property
    def full(self) -> bool:
        return bool(self.limit) and self.used >= self.limit


def _per_owner(rows: Any, key: str, value: str = "n") -> dict[int, int]:
    return {int(r[key]): int(r[value] or 0) for r in rows}


def usage_against_quota(user_ids: list[int]) -> dict[int, list[QuotaUse]]:
    """Each user's use of each quota now, for the staff usage page (one query per
    quota for all the users)."""
    owner = "conversation__owner_id"
    hour_ago, today = timezone.now() - timedelta(hours=1), _day_start()
    active, recent = Q(status__in=Turn.ACTIVE), Q(created_at__gte=hour_ago)
    conversations = _per_owner(
        Conversation.objects.visible()
        .filter(owner_id__in=user_ids)
        .values("owner_id")
        .annotate(n=Count("id")),
        "owner_id",
    )
    turns = list(
        Turn.objects.filter(Q(conversation__owner_id__in=user_ids) & (active | recent))
        .values(owner)
        .annotate(active=Count("id", filter=active), recent=Count("id", filter=recent))
    )
    tokens = _per_owner(
        Message.objects.filter(
            conversation__owner_id__in=user_ids, created_at__gte=today, usage__isnull=False
        )
        .values(owner)
        .annotate(n=Sum(_tokens())),
        owner,
    )
    stored = _per_owner(
        WorkspaceFile.objects.filter(
            conversation__owner_id__in=user_ids, conversation__deleted_at__isnull=True
        )
        .values(owner)
        .annotate(n=Sum("size")),
        owner,
    )
    running, started = _per_owner(turns, owner, "active"), _per_owner(turns, owner, "recent")
    return {
        uid: [
            QuotaUse(
                "Conversations", conversations.get(uid, 0), settings.CODEACT_QUOTA_CONVERSATIONS
            ),
            QuotaUse("Running now", running.get(uid, 0), settings.CODEACT_QUOTA_CONCURRENT_TURNS),
            QuotaUse(
                "Turns, last hour", started.get(uid, 0), settings.CODEACT_QUOTA_TURNS_PER_HOUR
            ),
            QuotaUse("Tokens today", tokens.get(uid, 0), settings.CODEACT_QUOTA_TOKENS_PER_DAY),
            QuotaUse(
                "Stored files", stored.get(uid, 0), settings.CODEACT_QUOTA_STORED_MB * MiB, "bytes"
            ),
        ]
        for uid in user_ids
    }
