"""Writes that span rows or notify clients. Only these functions broadcast,
and only after their transaction commits (persist first, notify second)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.http import Http404
from django.utils import timezone

from chat import broadcast, live
from chat.events import utf16_len
from chat.models import Conversation, Execution, Message, Output, Turn
from chat.serialize import (
    conversation_event,
    execution_event,
    message_event,
    output_event,
    turn_event,
)
from sandbox.api import ExecutionResult

log = logging.getLogger(__name__)


def worker_name() -> str:
    """Host and process id of the worker that claims a turn (computed per call: a
    forking pool runs tasks in children)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ActionError(Exception):
    """A request the user can fix; `code` and the message go to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def notify(conversation_id: Any, *events: Any) -> None:
    """Publish events once the current transaction commits (never a row the
    database might still roll back); several events go out in one round trip."""
    transaction.on_commit(lambda: broadcast.publish(conversation_id, *events))


def _one_statement() -> Any:
    """For a write done in one SQL statement: outside a transaction the statement
    commits on its own (one round trip, where an atomic block adds a BEGIN and a
    COMMIT); inside the caller's transaction it gets a savepoint, so a failure
    leaves that transaction usable."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def access_conversation(
    user: AbstractBaseUser | AnonymousUser, conversation_id: Any
) -> Conversation:
    """The one ownership check for every read and write of a conversation.

    Raises Http404 when the conversation does not exist or belongs to someone
    else, so the two cases cannot be told apart.
    """
    if not user.is_authenticated:
        raise Http404("No such conversation")
    try:
        return Conversation.objects.get(id=conversation_id, owner_id=user.pk)
    except (Conversation.DoesNotExist, ValueError, ValidationError):
        raise Http404("No such conversation") from None


def available_models() -> list[dict[str, Any]]:
    return [{"key": m["key"], "label": m["label"]} for m in settings.CODEACT_MODELS]


def model_config(key: str) -> dict[str, Any]:
    for model in settings.CODEACT_MODELS:
        if model["key"] == key:
            return dict(model)
    return dict(settings.CODEACT_MODELS[0])


def do_create_conversation(owner: User, model: str | None = None) -> Conversation:
    keys = {str(m["key"]) for m in settings.CODEACT_MODELS}
    chosen = model if model in keys else str(settings.CODEACT_MODELS[0]["key"])
    return Conversation.objects.create(owner=owner, model=chosen)


def do_rename_conversation(conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())[:200]
    if not title:
        raise ActionError("invalid_title", "A title cannot be empty.")
    return _update_conversation(conversation, title=title)


def _update_conversation(conversation: Conversation, **fields: str) -> Conversation:
    with transaction.atomic():
        conversation.seq = conversation.next_seq()
        for name, value in fields.items():
            setattr(conversation, name, value)
        conversation.save(update_fields=[*fields, "seq", "updated_at"])
        notify(conversation.id, conversation_event(conversation))
    return conversation


def do_set_model(conversation: Conversation, key: str) -> Conversation:
    """Choose the model that answers this conversation's next messages."""
    if key not in {str(m["key"]) for m in settings.CODEACT_MODELS}:
        raise ActionError("unknown_model", f"There is no model called '{key[:100]}'.")
    return _update_conversation(conversation, model=key)


def do_delete_conversation(conversation: Conversation) -> None:
    conversation_id = conversation.id
    with transaction.atomic():
        conversation.delete()
        notify(conversation_id, {"type": "deleted"})


def _clear_live_on_commit(message_id: int) -> None:
    transaction.on_commit(lambda: live.clear(message_id))


def _enqueue_turn(turn_id: int) -> None:
    from chat.tasks import run_turn

    transaction.on_commit(lambda: run_turn.delay(turn_id))


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= 60 else words[:57].rsplit(" ", 1)[0] + "…"


# The user's message and its queued turn in one statement (one round trip on the way
# to the first token): take the numbers (message, the title when this is the first
# message, the turn), store the message, queue the turn.
_SEND_SQL = """
WITH bumped AS (
    UPDATE chat_conversation SET
        last_seq = last_seq + %(count)s,
        updated_at = %(now)s,
        title = CASE WHEN %(first)s THEN %(title)s ELSE title END,
        seq = CASE WHEN %(first)s THEN last_seq + 2 ELSE seq END
    WHERE id = %(conversation)s
    RETURNING last_seq
), message AS (
    INSERT INTO chat_message
        (conversation_id, seq, role, content, status, final, code, created_at, updated_at)
    SELECT %(conversation)s, last_seq - %(count)s + 1, 'user', %(text)s, 'complete', false, '',
        %(now)s, %(now)s
    FROM bumped
    RETURNING id
)
INSERT INTO chat_turn (conversation_id, user_message_id, seq, status, model, stop_requested,
    worker, error_code, error, created_at)
SELECT %(conversation)s, message.id, bumped.last_seq, 'queued', %(model)s, false, '', '', '',
    %(now)s
FROM bumped, message
RETURNING user_message_id, id, seq
"""

TURN_IN_PROGRESS = (
    "The assistant is still answering the previous message. Wait for it or press Stop."
)


def _start_turn(conversation: Conversation, user_message: Message, seq: int) -> Turn:
    """Insert a queued turn; the caller's transaction fails with IntegrityError
    (the one-active-turn constraint) while another turn is queued or running."""
    turn = Turn.objects.create(
        conversation=conversation, user_message=user_message, model=conversation.model, seq=seq
    )
    notify(conversation.id, turn_event(turn))
    _enqueue_turn(turn.pk)
    return turn


def do_send_user_message(conversation: Conversation, text: str) -> tuple[Message, Turn]:
    """Persist the user's message and a queued turn, then start the worker on commit.

    Refused with ActionError("turn_in_progress") while a turn of this
    conversation is queued or running: nothing is stored in that case.
    """
    text = text.strip()
    if not text:
        raise ActionError("empty_message", "The message is empty.")
    if len(text) > settings.CODEACT_MAX_MESSAGE_CHARS:
        raise ActionError(
            "message_too_long",
            f"The message is {len(text):,} characters long; the limit is "
            f"{settings.CODEACT_MAX_MESSAGE_CHARS:,}.",
        )
    default_title = Conversation._meta.get_field("title").default
    first = conversation.title == default_title and not conversation.messages.exists()
    title = _title_from(text) if first else ""
    now = timezone.now()
    params: dict[str, Any] = {
        "conversation": conversation.id,
        "count": 3 if first else 2,
        "first": first,
        "title": title,
        "text": text,
        "model": conversation.model,
        "now": now,
    }
    try:
        with _one_statement(), connection.cursor() as cursor:
            # A turn already queued or running is caught by the one-active-turn
            # constraint and the whole statement fails: nothing is stored.
            cursor.execute(_SEND_SQL, params)
            row = cursor.fetchone()
    except IntegrityError:
        raise ActionError("turn_in_progress", TURN_IN_PROGRESS) from None
    if row is None:
        raise Http404("No such conversation")
    message_id, turn_id, last = row
    conversation.last_seq = last
    message = Message(
        id=message_id,
        conversation=conversation,
        role=Message.Role.USER,
        content=text,
        status=Message.Status.COMPLETE,
        seq=last - params["count"] + 1,
        created_at=now,
        updated_at=now,
    )
    turn = Turn(
        id=turn_id,
        conversation=conversation,
        user_message=message,
        model=conversation.model,
        seq=last,
        created_at=now,
    )
    events: list[Any] = [message_event(message)]
    if first:
        conversation.title, conversation.seq = title, last - 1
        events.append(conversation_event(conversation))
    notify(conversation.id, *events, turn_event(turn))
    _enqueue_turn(turn.pk)
    return message, turn


def do_retry_turn(conversation: Conversation, turn_id: int) -> Turn:
    """Answer the same user message again after a failed or interrupted turn."""
    try:
        with transaction.atomic():
            last = conversation.turns.order_by("-id").first()
            if last is None or last.pk != turn_id:
                raise ActionError("not_retryable", "Only the most recent turn can be retried.")
            if last.status not in (
                Turn.Status.FAILED,
                Turn.Status.INTERRUPTED,
                Turn.Status.STOPPED,
            ):
                raise ActionError(
                    "not_retryable", f"This turn is {last.status}; there is nothing to retry."
                )
            return _start_turn(conversation, last.user_message, conversation.next_seq())
    except IntegrityError:
        raise ActionError("turn_in_progress", TURN_IN_PROGRESS) from None


def do_request_stop(conversation: Conversation) -> Turn | None:
    """Ask the running (or queued) turn to stop; the worker ends it as `stopped`."""
    with transaction.atomic():
        turn = conversation.turns.filter(status__in=Turn.ACTIVE).first()
        if turn is None:
            return None
        if turn.status == Turn.Status.QUEUED:
            # Lock in the order claim and send do (the conversation, then the
            # turn), or a Stop at the instant of a claim deadlocks with it.
            list(Conversation.objects.select_for_update().filter(pk=conversation.pk).values("pk"))
            queued = Turn.objects.select_for_update().filter(pk=turn.pk, status=turn.status).first()
            if queued is not None:
                return _finish_turn(queued, Turn.Status.STOPPED)
            # Claimed meanwhile: the worker sees the request and stops it.
        Turn.objects.filter(pk=turn.pk, status__in=Turn.ACTIVE).update(stop_requested=True)
    return turn


# --- used by the worker -------------------------------------------------------


def _columns(model: type[Any], table: str) -> str:
    return ", ".join(f"{table}.{f.column}" for f in model._meta.concrete_fields)


# Claim a queued turn in one statement (one round trip on the way to the first
# token): take two sequence numbers (the turn's, then its first reply's), mark the
# turn running with a lease, store the first reply (streaming, empty), and return
# all three rows. Only a turn still queued is claimed, and the conversation row is
# locked before the turn (the order every other writer uses: no deadlock). A
# duplicate delivery that loses the race for the turn row still takes its two
# numbers; a client treats the gap as a reason to resync, and finds nothing missing.
_CLAIM_SQL = f"""
WITH bumped AS (
    UPDATE chat_conversation SET last_seq = last_seq + 2, updated_at = %(now)s
    WHERE id = (SELECT conversation_id FROM chat_turn WHERE id = %(turn)s AND status = 'queued')
    RETURNING {_columns(Conversation, "chat_conversation")}
), claimed AS (
    UPDATE chat_turn SET status = 'running', lease_until = %(lease)s, worker = %(worker)s,
        started_at = %(now)s, seq = bumped.last_seq - 1
    FROM bumped WHERE chat_turn.id = %(turn)s AND chat_turn.status = 'queued'
    RETURNING {_columns(Turn, "chat_turn")}
), reply AS (
    INSERT INTO chat_message
        (conversation_id, turn_id, seq, role, content, status, final, code, created_at, updated_at)
    SELECT conversation_id, id, seq + 1, 'assistant', '', 'streaming', false, '',
        %(now)s, %(now)s
    FROM claimed
    RETURNING id, seq
)
SELECT reply.id, reply.seq, {_columns(Turn, "claimed")}, {_columns(Conversation, "bumped")}
FROM reply, claimed, bumped
"""


# The order _CLAIM_SQL returns the turn's and the conversation's columns in.
_TURN_FIELDS = [f.attname for f in Turn._meta.concrete_fields]
_CONVERSATION_FIELDS = [f.attname for f in Conversation._meta.concrete_fields]


def claim_turn(turn_id: int) -> Turn | None:
    """Compare-and-set a queued turn to running with a lease; None if not ours to run.

    The claimed turn comes with its first reply already stored (streaming, empty)
    as `turn.first_reply`, and with its conversation. A turn found running with an
    expired lease belonged to a worker that died: it is marked interrupted (and
    never silently re-run).
    """
    now = timezone.now()
    params: dict[str, Any] = {
        "now": now,
        "turn": turn_id,
        "lease": Turn.lease_expiry(),
        "worker": worker_name(),
    }
    with _one_statement(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
    if row is None:
        stale = Turn.objects.filter(
            pk=turn_id, status=Turn.Status.RUNNING, lease_until__lt=now
        ).first()
        if stale is not None:
            do_interrupt_turn(stale)
        return None
    split = 2 + len(_TURN_FIELDS)
    turn = Turn.from_db(connection.alias, _TURN_FIELDS, row[2:split])
    turn.conversation = Conversation.from_db(connection.alias, _CONVERSATION_FIELDS, row[split:])
    reply = Message(
        id=row[0],
        conversation=turn.conversation,
        turn=turn,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        seq=row[1],
        created_at=now,
        updated_at=now,
    )
    turn.first_reply = reply  # type: ignore[attr-defined]
    notify(turn.conversation_id, turn_event(turn), message_event(reply))
    return turn


def extend_lease(turn: Turn) -> None:
    Turn.objects.filter(pk=turn.pk, status=Turn.Status.RUNNING).update(
        lease_until=turn.lease_expiry()
    )


def stopped_turns(turn_ids: list[int]) -> set[int]:
    """Which of these turns the user asked to stop. Polled five times a second by
    each worker process for all its running turns: plain SQL, not a query the ORM
    would compile each time."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM chat_turn WHERE id = ANY(%s) AND stop_requested", [list(turn_ids)]
        )
        return {int(row[0]) for row in cursor.fetchall()}


def do_start_reply(turn: Turn) -> Message:
    """Store a new, empty streaming reply of the turn (replies after the first)."""
    with transaction.atomic():
        message = Message.objects.create(
            conversation_id=turn.conversation_id,
            turn=turn,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            seq=turn.conversation.next_seq(),
        )
        notify(turn.conversation_id, message_event(message))
    return message


def flush_reply(message: Message, content: str) -> None:
    """Save the partial text so a reload shows it; no sequence number, no event."""
    Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(
        content=content, updated_at=timezone.now()
    )


def do_finish_reply(
    message: Message,
    content: str,
    status: str,
    usage: dict[str, Any] | None = None,
    final: bool = False,
) -> Message:
    with transaction.atomic():
        message.content = content
        message.status = status
        message.usage = usage
        message.final = final
        message.seq = message.conversation.next_seq()
        message.save(update_fields=["content", "status", "usage", "final", "seq", "updated_at"])
        notify(message.conversation_id, message_event(message))
        _clear_live_on_commit(message.pk)
    return message


def do_add_notice(turn: Turn, code: str, text: str) -> Message:
    """Tell the user something about the turn (a limit, lost state); the model never sees it."""
    with transaction.atomic():
        message = Message.objects.create(
            conversation_id=turn.conversation_id,
            turn=turn,
            role=Message.Role.NOTICE,
            code=code,
            content=text,
            seq=turn.conversation.next_seq(),
        )
        notify(turn.conversation_id, message_event(message))
    return message


def _finish_turn(turn: Turn, status: str, code: str = "", error: str = "") -> Turn:
    turn.status = status
    turn.error_code = code
    turn.error = error
    turn.lease_until = None
    turn.finished_at = timezone.now()
    turn.seq = turn.conversation.next_seq()
    turn.save(update_fields=["status", "error_code", "error", "lease_until", "finished_at", "seq"])
    notify(turn.conversation_id, turn_event(turn))
    return turn


def do_finish_turn(turn: Turn, status: str, code: str = "", error: str = "") -> Turn:
    with transaction.atomic():
        return _finish_turn(turn, status, code, error)


def do_interrupt_turn(turn: Turn) -> None:
    """Close a turn whose worker vanished: partial replies are kept and marked."""
    with transaction.atomic():
        locked = Turn.objects.select_for_update().select_related("conversation").get(pk=turn.pk)
        if locked.status != Turn.Status.RUNNING:
            return
        streaming = list(locked.replies.filter(status=Message.Status.STREAMING))
        latest = live.read([m.pk for m in streaming])
        for message in streaming:
            # The live copy may be ahead of the last flush; keep what the user saw.
            if len(latest.get(message.pk, "")) > len(message.content):
                message.content = latest[message.pk]
            message.conversation = locked.conversation
            message.status = Message.Status.INTERRUPTED
            message.seq = locked.conversation.next_seq()
            message.save(update_fields=["content", "status", "seq", "updated_at"])
            notify(locked.conversation_id, message_event(message))
            _clear_live_on_commit(message.pk)
        for execution in locked.executions.filter(status=Execution.Status.RUNNING):
            execution.conversation = locked.conversation
            _close_execution(
                execution,
                Execution.Status.LOST,
                "The worker running this code stopped. The code may or may not have "
                "finished; it was not run again.",
            )
        _finish_turn(
            locked,
            Turn.Status.INTERRUPTED,
            "worker_lost",
            "The worker running this reply stopped unexpectedly. What was written so far "
            "is kept; nothing was run again. Press Retry to ask again.",
        )


def do_sweep_turns() -> dict[str, int]:
    """Interrupt turns whose lease expired; re-enqueue turns whose task was lost.

    Re-enqueueing is safe because a turn is claimed by compare-and-set: a
    duplicate task finds it claimed and does nothing.
    """
    now = timezone.now()
    expired = list(Turn.objects.filter(status=Turn.Status.RUNNING, lease_until__lt=now))
    for turn in expired:
        do_interrupt_turn(turn)
    stale_before = now - timedelta(seconds=settings.CODEACT_QUEUED_TURN_RETRY_SECONDS)
    queued = list(
        Turn.objects.filter(status=Turn.Status.QUEUED, created_at__lt=stale_before).values_list(
            "pk", flat=True
        )
    )
    from chat.tasks import run_turn

    for turn_id in queued:
        run_turn.delay(turn_id)
    return {"interrupted": len(expired), "requeued": len(queued)}


# --- code executions, their outputs, and workspace files -------------------------


def do_start_execution(
    turn: Turn, message: Message, code: str, limits: dict[str, Any]
) -> Execution:
    with transaction.atomic():
        seq = turn.conversation.next_seq()  # also locks the conversation: numbers stay unique
        number = Execution.objects.filter(conversation_id=turn.conversation_id).count() + 1
        execution = Execution.objects.create(
            conversation_id=turn.conversation_id,
            turn=turn,
            message=message,
            code=code,
            number=number,
            seq=seq,
            limits=limits,
        )
        notify(turn.conversation_id, execution_event(execution))
    return execution


def _close_execution(execution: Execution, status: str, detail: str, **fields: Any) -> None:
    execution.status = status
    execution.detail = detail
    execution.finished_at = timezone.now()
    if execution.duration is None:
        execution.duration = (execution.finished_at - execution.started_at).total_seconds()
    for name, value in fields.items():
        setattr(execution, name, value)
    execution.seq = execution.conversation.next_seq()
    execution.save()
    notify(execution.conversation_id, execution_event(execution))


def do_finish_execution(
    execution: Execution, result: ExecutionResult, observation: str, sandbox_id: int | None
) -> Execution:
    """Record how the code ended and exactly what the model was told about it."""
    with transaction.atomic():
        _close_execution(
            execution,
            result.status,
            result.detail,
            execution_count=result.execution_count,
            duration=result.duration,
            kernel_restarted=result.state_lost,
            observation=observation,
            sandbox_id=sandbox_id,
            dropped={
                key: value
                for key, value in (
                    ("stream_bytes", result.dropped_stream_bytes),
                    ("displays", result.dropped_displays),
                    ("images", result.dropped_images),
                )
                if value
            },
        )
    return execution


def do_fail_execution(execution: Execution, detail: str) -> Execution:
    """The code could not run at all (no sandbox); it never started."""
    with transaction.atomic():
        _close_execution(execution, Execution.Status.FAILED, detail)
    return execution


IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")


@dataclass
class StreamTail:
    """Where an execution's outputs stand: text on the same stream extends the last row."""

    output: Output | None = None
    length: int = 0  # of the last stream row's text, in UTF-16 code units
    next_index: int = 0


def _merge_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and out.get("output_type") == "stream"
            and last.get("output_type") == "stream"
            and last.get("name") == out.get("name")
        ):
            merged[-1] = {**last, "text": str(last["text"]) + str(out.get("text", ""))}
        else:
            merged.append(out)
    return merged


def _rich_fields(out: dict[str, Any]) -> dict[str, Any]:
    kind = out.get("output_type")
    if kind == "error":
        traceback = [str(line) for line in out.get("traceback") or []]
        return {
            "data": {
                "ename": str(out.get("ename", "")),
                "evalue": str(out.get("evalue", "")),
                "traceback": traceback,
            },
            "text": "\n".join(traceback),
        }
    raw_bundle = out.get("data")
    bundle: dict[str, Any] = raw_bundle if isinstance(raw_bundle, dict) else {}
    fields: dict[str, Any] = {"data": {m: str(bundle[m]) for m in TEXT_MIMES if m in bundle}}
    for mime in IMAGE_MIMES:
        if mime not in bundle:
            continue
        raw = str(bundle[mime])
        try:
            image = (
                raw.encode() if mime == "image/svg+xml" else base64.b64decode(raw, validate=True)
            )
        except (binascii.Error, ValueError):
            continue
        fields |= {"image": image, "image_mime": mime}
        break
    return fields


def do_record_outputs(
    execution: Execution, outputs: list[dict[str, Any]], tail: StreamTail
) -> None:
    """Persist a batch of a running cell's outputs, then notify.

    Text on the stream of the last row is appended to it and announced as an
    `output_delta`; anything else becomes a new row and an `output` event.
    """
    conversation = execution.conversation
    with transaction.atomic():
        for out in _merge_streams(outputs):
            seq = conversation.next_seq()
            if out.get("output_type") == "stream":
                name = "stderr" if out.get("name") == "stderr" else "stdout"
                text = str(out.get("text", ""))
                row = tail.output
                if row is not None and row.name == name:
                    Output.objects.filter(pk=row.pk).update(
                        text=Concat(F("text"), Value(text)), seq=seq
                    )
                    notify(
                        conversation.id,
                        {
                            "type": "output_delta",
                            "seq": seq,
                            "output_id": row.pk,
                            "execution_id": execution.pk,
                            "offset": tail.length,
                            "text": text,
                        },
                    )
                    tail.length += utf16_len(text)
                    continue
                fields: dict[str, Any] = {"name": name, "text": text}
            else:
                fields = _rich_fields(out)
            row = Output.objects.create(
                execution=execution,
                conversation=conversation,
                seq=seq,
                index=tail.next_index,
                output_type=str(out.get("output_type")),
                **fields,
            )
            tail.next_index += 1
            is_stream = row.output_type == Output.Type.STREAM
            tail.output = row if is_stream else None
            tail.length = utf16_len(row.text) if is_stream else 0
            notify(conversation.id, output_event(row))
