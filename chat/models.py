"""Conversations, messages and turns.

Every row that a client shows carries `seq`: the conversation's sequence
number at the row's last persisted change. A client that reconnects asks for
everything with seq > its last seen value and rebuilds its view from rows.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from chat import lease
from chat.agent import codeact


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def visible(self) -> ConversationQuerySet:
        """What the owner sees: not deleted by them (a deletion kept for review is
        hidden from the owner but stays for reviewers until it is purged)."""
        return self.filter(deleted_at__isnull=True)


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, default="New conversation")
    model = models.CharField(max_length=100, default="default")
    # Whether its sandbox joins the egress network (only where CODEACT_EGRESS=proxy).
    web_access = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_seq = models.BigIntegerField(default=0)
    # seq of the last change to the title or model (what a `conversation` event carries)
    seq = models.BigIntegerField(default=0)
    # Review: a reviewer marks a conversation for attention (never shown to its owner).
    flagged = models.BooleanField(default=False)
    flagged_at = models.DateTimeField(null=True, blank=True)
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Set when the owner deleted it under CODEACT_RETENTION=keep-for-review.
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"]),
            models.Index(fields=["flagged", "-updated_at"]),
        ]
        # Staff status alone shows no conversation content: reading another
        # user's transcript and exporting logs each need their own permission.
        permissions = [
            ("review_conversation", "Can read the transcript of any conversation"),
            ("export_conversation", "Can export conversations (JSON, notebooks, training data)"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def has_web_access(self) -> bool:
        """Its sandbox joins the egress network: the deployment offers web access
        (CODEACT_EGRESS=proxy) and the owner left it on for this conversation."""
        return settings.CODEACT_EGRESS == "proxy" and self.web_access

    def next_seq(self) -> int:
        """Take the next sequence number; must run inside the writer's transaction.

        The UPDATE locks the conversation row until commit, so sequence numbers
        of one conversation become visible in order: a client that has seen
        seq N never later learns of a committed N-1. Inside `chat.lease.fenced`
        the number is taken only while the fenced turn still runs (else
        `LeaseLost`): the turn row is locked first, in the same statement.
        """
        fence = lease.current(self.id)
        with connection.cursor() as cursor:
            if fence is None:
                cursor.execute(_NEXT_SEQ_SQL, [timezone.now(), self.id])
            else:
                cursor.execute(_FENCED_NEXT_SEQ_SQL, [timezone.now(), fence.turn_id, self.id])
            row = cursor.fetchone()
        if row is None:
            if fence is not None:
                raise lease.LeaseLost(f"turn {fence.turn_id} is no longer this worker's")
            raise Conversation.DoesNotExist(self.id)
        self.last_seq = int(row[0])
        return self.last_seq


_NEXT_SEQ_SQL = (
    "UPDATE chat_conversation SET last_seq = last_seq + 1, updated_at = %s "
    "WHERE id = %s RETURNING last_seq"
)
# The turn row is locked before the conversation's, as the sweeper locks them
# when it interrupts a turn: a write racing the sweeper waits for it, then sees
# the turn interrupted and takes no number.
_FENCED_NEXT_SEQ_SQL = """
UPDATE chat_conversation SET last_seq = chat_conversation.last_seq + 1, updated_at = %s
FROM (SELECT id FROM chat_turn WHERE id = %s AND status = 'running' FOR UPDATE) AS held
WHERE chat_conversation.id = %s
RETURNING chat_conversation.last_seq
"""


class Turn(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        INTERRUPTED = "interrupted"
        STOPPED = "stopped"

    class Kind(models.TextChoices):
        ANSWER = "answer"  # the model answers the user's message (the agent loop)
        CELL = "cell"  # the user runs a cell in the conversation's kernel; no model

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    user_message = models.ForeignKey("Message", on_delete=models.CASCADE, related_name="turns")
    kind = models.CharField(
        max_length=8, choices=Kind.choices, default=Kind.ANSWER, db_default=Kind.ANSWER
    )
    seq = models.BigIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    model = models.CharField(max_length=100, default="default")
    stop_requested = models.BooleanField(default=False)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # When the sweeper last sent this queued turn's task again (at most once a period).
    requeued_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    # The settings in effect when the model answered (empty for a cell the user ran,
    # and for turns from before they were kept).
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_executions = models.PositiveIntegerField(null=True, blank=True)
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

    @staticmethod
    def lease_expiry() -> datetime:
        return timezone.now() + timedelta(seconds=settings.CODEACT_TURN_LEASE_SECONDS)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        NOTICE = "notice"  # shown to the user (limits, lost state); never sent to the model

    # `code` of a user message that is a cell the user ran (its content is the code).
    CELL = "cell"

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
    # The turn's answer, as opposed to a step that ran code (notices: their code).
    final = models.BooleanField(default=False)
    code = models.CharField(max_length=40, blank=True)  # notices: what about; cells: "cell"
    usage = models.JSONField(null=True, blank=True)
    # How the model wrote its code in this reply (chat.agent.formats: execute, fence, tool).
    action_format = models.CharField(max_length=10, blank=True, default="", db_default="")
    # Which model wrote it: the endpoint's model name and the endpoint's host, as
    # configured when it answered (the conversation keeps only the key, whose
    # configuration can change).
    model_name = models.CharField(max_length=200, blank=True, default="", db_default="")
    endpoint = models.CharField(max_length=200, blank=True, default="", db_default="")
    # Set when the user edited this question or asked for another answer: the row
    # stays in the record (and on the page, marked) but is never sent to the model.
    superseded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "seq"]),
            # The admin's "written by" filters: their choices and the rows they pick.
            models.Index(
                fields=["model_name", "endpoint", "action_format"],
                condition=Q(role="assistant"),
                name="chat_message_writer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    @property
    def superseded(self) -> bool:
        return self.superseded_at is not None


class Execution(models.Model):
    """One code action: the code, how it ended, and what the model was told."""

    class Status(models.TextChoices):
        # The labels are what the page, the transcript and the admin show.
        RUNNING = "running", "Running…"
        OK = "ok", "Done"
        ERROR = "error", "Error"  # the code raised
        TIMEOUT = "timeout", "Timed out"
        INTERRUPTED = "interrupted", "Stopped"  # the user pressed Stop
        DIED = "died", "Kernel died"  # the kernel or its container died
        LOST = "lost", "Cut off"  # the worker died while it ran; never re-run
        FAILED = "failed", "Not run"  # no sandbox could run it

    class Origin(models.TextChoices):
        AGENT = "agent", "Run by the assistant"
        USER = "user", "Run by you"  # its message is the user's, its code typed or edited by them

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="executions"
    )
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="executions")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="execution")
    seq = models.BigIntegerField(default=0)
    number = models.PositiveIntegerField()  # "Code cell N" within the conversation
    code = models.TextField()
    origin = models.CharField(
        max_length=8, choices=Origin.choices, default=Origin.AGENT, db_default=Origin.AGENT
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    execution_count = models.IntegerField(null=True, blank=True)
    sandbox = models.ForeignKey(
        "SandboxRecord", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kernel_restarted = models.BooleanField(default=False)
    detail = models.TextField(blank=True)
    observation = models.TextField(blank=True)  # exactly what the model received
    dropped = models.JSONField(default=dict, blank=True)
    limits = models.JSONField(default=dict, blank=True)  # the limits in effect
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["conversation", "seq"])]

    def __str__(self) -> str:
        return f"cell {self.number} ({self.status})"

    @staticmethod
    def observation_for(observation: str, status: str, detail: str) -> str:
        """What the model is told of an execution: its recorded observation, or,
        for one that never finished, why there is none."""
        if observation:
            return observation
        if status == Execution.Status.FAILED:
            return f"{codeact.OBSERVATION_PREFIX}[The code was not run: {detail}]"
        return (
            f"{codeact.OBSERVATION_PREFIX}[The execution was cut off when the worker running "
            "it stopped; its result is unknown and it was not run again.]"
        )


class Output(models.Model):
    """One nbformat output of an execution. Consecutive text on one stream is one row."""

    class Type(models.TextChoices):
        STREAM = "stream"
        DISPLAY_DATA = "display_data"
        EXECUTE_RESULT = "execute_result"
        ERROR = "error"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="outputs")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField(default=0)
    index = models.PositiveIntegerField()
    output_type = models.CharField(max_length=20, choices=Type.choices)
    name = models.CharField(max_length=10, blank=True)  # stdout / stderr
    text = models.TextField(blank=True)
    # The mime bundle without the image (display data) or ename/evalue/traceback (errors).
    data = models.JSONField(default=dict, blank=True)
    image = models.BinaryField(null=True, blank=True)
    image_mime = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["execution_id", "index"]
        indexes = [models.Index(fields=["conversation", "seq"])]
        constraints = [
            models.UniqueConstraint(fields=["execution", "index"], name="chat_output_index")
        ]

    def __str__(self) -> str:
        return f"{self.output_type} {self.index} of {self.execution_id}"


class WorkspaceFile(models.Model):
    """A file of the conversation's /workspace, kept here so a new sandbox gets it back."""

    class Origin(models.TextChoices):
        UPLOAD = "upload"
        GENERATED = "generated"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=255)  # relative to /workspace
    origin = models.CharField(max_length=10, choices=Origin.choices)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content = models.BinaryField()
    seq = models.BigIntegerField(default=0)
    execution = models.ForeignKey(
        Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="files"
    )
    # The sandbox that holds this version, and the mtime it has there.
    sandbox = models.ForeignKey(
        "SandboxRecord", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    mtime_ns = models.BigIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "path"], name="chat_file_path")
        ]
        indexes = [models.Index(fields=["conversation", "seq"])]

    def __str__(self) -> str:
        return self.path


class FileDeletion(models.Model):
    """A file the user deleted while a sandbox still holds it: that sandbox's copy
    is removed before its next execution, so the code does not see it and it is
    not captured again."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="file_deletions"
    )
    path = models.CharField(max_length=255)
    sandbox = models.ForeignKey("SandboxRecord", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.path


class SandboxRecord(models.Model):
    """A sandbox container the system knows about; anything else labelled as
    ours on the Docker engine is an orphan and is removed."""

    class State(models.TextChoices):
        WARM = "warm"  # ready in the pool, belongs to nobody
        CLAIMED = "claimed"  # a conversation's sandbox
        REMOVED = "removed"

    LIVE = (State.WARM, State.CLAIMED)
    # The container id of a reserved row whose container is still starting.
    PENDING = "pending-"

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
    # Its address on the egress network ("" without web access): the proxy's log
    # names a sandbox by it.
    egress_address = models.CharField(max_length=45, blank=True)
    # The engine it runs on (chat/worker/hosts.py): a Docker engine's URL ("" the
    # default engine) or "kubernetes:<namespace>". Any worker attaches through it.
    host = models.CharField(max_length=200, blank=True, default="", db_default="")

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


class SandboxHost(models.Model):
    """An engine sandboxes run on, as the workers last found it. A host that stops
    answering is marked down: no new sandbox goes there, its conversations get a
    new sandbox elsewhere, and beat marks it up again once it answers."""

    address = models.CharField(max_length=200, unique=True)  # as SandboxRecord.host
    down_since = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.address or "default engine"

    @property
    def up(self) -> bool:
        return self.down_since is None


class Feedback(models.Model):
    """A user's rating of an assistant answer in their own conversation."""

    class Rating(models.IntegerChoices):
        UP = 1, "Good"
        DOWN = -1, "Bad"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="feedback"
    )
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "feedback"
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="chat_feedback_once")
        ]
        indexes = [models.Index(fields=["conversation", "rating"])]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on message {self.message_id}"


class ReviewNote(models.Model):
    """A reviewer's note on a conversation; the owner never sees it."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="review_notes"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"note on {self.conversation_id}: {self.text[:60]}"


class AuditRecord(models.Model):
    """Who read or exported which conversations, and when. Append-only."""

    class Action(models.TextChoices):
        TRANSCRIPT = "transcript", "Viewed a transcript"
        LOG_ROW = "log_row", "Viewed a log row in the admin"
        SEARCH = "search", "Searched the logs"
        EXPORT_JSON = "export_json", "Exported JSON"
        EXPORT_IPYNB = "export_ipynb", "Exported notebooks"
        EXPORT_JSONL = "export_jsonl", "Exported training JSONL"
        FLAG = "flag", "Flagged or unflagged"
        NOTE = "note", "Added a review note"
        DOWNLOAD_FILE = "download_file", "Downloaded a workspace file"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text so the record outlives the account (and names command-line runs).
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=20, choices=Action.choices)
    conversations = models.JSONField(default=list)  # ids as strings
    count = models.PositiveIntegerField(default=0)
    detail = models.JSONField(default=dict, blank=True)
    via = models.CharField(max_length=20)  # web, admin, command
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} ({self.count})"


def _invite_token() -> str:
    return secrets.token_urlsafe(32)


class Invite(models.Model):
    """A single-use sign-up link, made by an admin (CODEACT_SIGNUP=invite)."""

    token = models.CharField(max_length=64, unique=True, default=_invite_token, editable=False)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for (optional).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"invite {self.token[:8]}… {self.note}".strip()

    def usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        expired = self.expires_at is not None and self.expires_at <= now
        return self.used_at is None and self.revoked_at is None and not expired


class WebRequest(models.Model):
    """One request a sandbox made through the egress proxy, as the proxy logged it."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="web_requests"
    )
    # The cell after which it was collected (a request still open when a cell ends,
    # such as a kept-alive HTTPS tunnel, is logged when it closes: a later cell).
    execution = models.ForeignKey(
        Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="web_requests"
    )
    at = models.DateTimeField(db_index=True)  # when the proxy finished it
    method = models.CharField(max_length=16)
    host = models.CharField(max_length=255, blank=True)
    port = models.IntegerField(null=True, blank=True)
    url = models.TextField(blank=True)
    status = models.IntegerField(null=True, blank=True)
    refused = models.BooleanField(default=False)
    # What happened in a few words: "status 200", "blocked: private address", ...
    outcome = models.CharField(max_length=80)
    error = models.CharField(max_length=64, blank=True)  # Squid's error page, if any
    reply_bytes = models.BigIntegerField(default=0)
    request_bytes = models.BigIntegerField(default=0)
    duration_ms = models.IntegerField(default=0)
    server = models.CharField(max_length=64, blank=True)  # the address connected to

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["conversation", "at"])]

    def __str__(self) -> str:
        return f"{self.method} {self.host}: {self.outcome}"

    @property
    def target(self) -> str:
        """What was asked for: the URL, or https://host[:port] for an HTTPS tunnel."""
        if self.method == "CONNECT":
            return f"https://{self.host}" + ("" if self.port in (None, 443) else f":{self.port}")
        return self.url
