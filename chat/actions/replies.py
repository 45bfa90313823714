"""The assistant's replies (streamed, flushed, finished) and notices to the user.

A streaming reply's text goes out as token deltas and is kept whole in Redis
(`chat.live`); the database copy is flushed every CODEACT_FLUSH_INTERVAL and
written in full when the reply finishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from chat import live
from chat.broadcast import publish_on_commit
from chat.models import Message, Turn
from chat.serialize import message_event


@dataclass(frozen=True)
class Writer:
    """Which model wrote a reply, and how it writes code: kept on the reply, as the
    conversation's model key can later name another configuration."""

    model_name: str  # the endpoint's name for the model
    endpoint: str  # the endpoint's host[:port]
    action_format: str  # chat.agent.formats (or a function format, in evaluations)


def endpoint_host(base_url: str) -> str:
    """The host[:port] of an endpoint's URL: what the record keeps of it (never the
    credentials a URL can carry, nor the path)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _clear_live_on_commit(message_id: int) -> None:
    transaction.on_commit(lambda: live.clear(message_id))


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
        publish_on_commit(turn.conversation_id, message_event(message))
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
    writer: Writer | None = None,
) -> Message:
    """Store the reply's whole text and how it ended (`final`: it is the answer), and
    which model wrote it how (`writer`, when given)."""
    fields = ["content", "status", "usage", "final", "seq", "updated_at"]
    with transaction.atomic():
        message.content = content
        message.status = status
        message.usage = usage
        message.final = final
        if writer is not None:
            message.action_format = writer.action_format
            message.model_name = writer.model_name
            message.endpoint = writer.endpoint
            fields += ["action_format", "model_name", "endpoint"]
        message.seq = message.conversation.next_seq()
        message.save(update_fields=fields)
        publish_on_commit(message.conversation_id, message_event(message))
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
        publish_on_commit(turn.conversation_id, message_event(message))
    return message


def interrupt_streaming(turn: Turn) -> None:
    """Mark the turn's streaming replies interrupted, keeping what the user saw
    (inside the caller's transaction, which holds the turn's lock)."""
    streaming = list(turn.replies.filter(status=Message.Status.STREAMING))
    latest = live.read([m.pk for m in streaming])
    for message in streaming:
        # The live copy may be ahead of the last flush; keep what the user saw.
        if len(latest.get(message.pk, "")) > len(message.content):
            message.content = latest[message.pk]
        message.conversation = turn.conversation
        message.status = Message.Status.INTERRUPTED
        message.seq = turn.conversation.next_seq()
        message.save(update_fields=["content", "status", "seq", "updated_at"])
        publish_on_commit(turn.conversation_id, message_event(message))
        _clear_live_on_commit(message.pk)
