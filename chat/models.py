"""Conversations, messages and turns.

Every row that a client shows carries `seq`: the conversation's sequence
number at the row's last persisted change. A client that reconnects asks for
everything with seq > its last seen value and rebuilds its view from rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, default="New conversation")
    model = models.CharField(max_length=100, default="default")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_seq = models.BigIntegerField(default=0)
    # seq of the last change to the title or model (what a `conversation` event carries)
    seq = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title

    def next_seq(self) -> int:
        """Take the next sequence number; must run inside the writer's transaction.

        The UPDATE locks the conversation row until commit, so sequence numbers
        of one conversation become visible in order: a client that has seen
        seq N never later learns of a committed N-1.
        """
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE chat_conversation SET last_seq = last_seq + 1, updated_at = %s "
                "WHERE id = %s RETURNING last_seq",
                [timezone.now(), self.id],
            )
            row = cursor.fetchone()
        if row is None:
            raise Conversation.DoesNotExist(self.id)
        self.last_seq = int(row[0])
        return self.last_seq


class Turn(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        INTERRUPTED = "interrupted"
        STOPPED = "stopped"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    user_message = models.ForeignKey("Message", on_delete=models.CASCADE, related_name="turns")
    seq = models.BigIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    model = models.CharField(max_length=100, default="default")
    stop_requested = models.BooleanField(default=False)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # One turn at a time per conversation, enforced by the database.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status__in=["queued", "running"]),
                name="chat_turn_one_active_per_conversation",
            )
        ]
        indexes = [
            models.Index(fields=["conversation", "seq"]),
            models.Index(fields=["status", "lease_until"]),
        ]

    def __str__(self) -> str:
        return f"turn {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @staticmethod
    def lease_expiry() -> datetime:
        return timezone.now() + timedelta(seconds=settings.CODEACT_TURN_LEASE_SECONDS)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        FAILED = "failed"
        INTERRUPTED = "interrupted"
        STOPPED = "stopped"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    turn = models.ForeignKey(
        Turn, null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
    )
    seq = models.BigIntegerField(default=0)
    role = models.CharField(max_length=12, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE)
    usage = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["conversation", "seq"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class SandboxRecord(models.Model):
    """A sandbox container the system knows about; anything else labelled as
    ours on the Docker engine is an orphan and is removed."""

    class State(models.TextChoices):
        WARM = "warm"  # ready in the pool, belongs to nobody
        CLAIMED = "claimed"  # a conversation's sandbox
        REMOVED = "removed"

    LIVE = (State.WARM, State.CLAIMED)

    container_id = models.CharField(max_length=64, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.WARM)
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="sandboxes"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    image = models.CharField(max_length=200)
    runtime = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(state="claimed"),
                name="chat_sandbox_one_per_conversation",
            )
        ]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"sandbox {self.container_id[:12]} ({self.state})"
