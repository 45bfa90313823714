"""Rows to event payloads (the shapes are defined in chat.events)."""

from __future__ import annotations

from chat import live
from chat.events import (
    ConversationData,
    ConversationEvent,
    MessageData,
    MessageEvent,
    PersistedEvent,
    TurnData,
    TurnEvent,
)
from chat.models import Conversation, Message, Turn
from chat.rendering import render_markdown


def message_data(message: Message) -> MessageData:
    streaming = message.status == Message.Status.STREAMING
    return {
        "id": message.pk,
        "role": message.role,
        "status": message.status,
        "content": message.content,
        # While streaming the client shows the raw text; HTML comes once, at the end.
        "html": "" if streaming else render_markdown(message.content),
        "turn_id": message.turn_id,
        "created_at": message.created_at.isoformat(),
    }


def turn_data(turn: Turn) -> TurnData:
    return {
        "id": turn.pk,
        "status": turn.status,
        "user_message_id": turn.user_message_id,
        "error_code": turn.error_code,
        "error": turn.error,
        "created_at": turn.created_at.isoformat(),
        "finished_at": turn.finished_at.isoformat() if turn.finished_at else None,
    }


def conversation_data(conversation: Conversation) -> ConversationData:
    return {"id": str(conversation.id), "title": conversation.title, "model": conversation.model}


def message_event(message: Message) -> MessageEvent:
    return {"type": "message", "seq": message.seq, "message": message_data(message)}


def turn_event(turn: Turn) -> TurnEvent:
    return {"type": "turn", "seq": turn.seq, "turn": turn_data(turn)}


def conversation_event(conversation: Conversation) -> ConversationEvent:
    return {
        "type": "conversation",
        "seq": conversation.seq,
        "conversation": conversation_data(conversation),
    }


def events_after(conversation: Conversation, after_seq: int) -> list[PersistedEvent]:
    """Everything a client that has seen `after_seq` is missing, in seq order.

    Rows carry the seq of their last change, so this is a snapshot of each
    changed row, not a log. Messages still streaming are always included:
    their partial text is flushed without taking a sequence number.
    """
    events: list[PersistedEvent] = []
    messages = list(
        conversation.messages.filter(seq__gt=after_seq)
        | conversation.messages.filter(status=Message.Status.STREAMING)
    )
    current = live.read([m.pk for m in messages if m.status == Message.Status.STREAMING])
    for message in messages:
        if len(current.get(message.pk, "")) > len(message.content):
            message.content = current[message.pk]
        events.append(message_event(message))
    events.extend(turn_event(t) for t in conversation.turns.filter(seq__gt=after_seq))
    if conversation.seq > after_seq:
        events.append(conversation_event(conversation))
    events.sort(key=lambda e: e["seq"])
    return events
