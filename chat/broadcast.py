"""Deliver events to a conversation's websocket group from synchronous code.

`publish` sends at once; `publish_on_commit` sends once the caller's
transaction commits, which is how actions announce the rows they wrote
(persist first, notify second).

Workers and views are synchronous. An event is one Redis PUBLISH, sent from
the calling thread on the message format and group channel of the Channels
layer (`RedisPubSubChannelLayer`), so every consumer subscribed to the group
receives it as if `group_send` had sent it. Going through the asyncio layer
instead cost a hop to an event-loop thread and ~0.5 ms of CPU per event; with
a token delta per event, that was the largest per-token cost of a turn.

Events of one conversation keep their order: they are published by the thread
that produces them, one after the other. Delivery is at most once by design:
while Redis is unreachable, events are dropped (one warning per outage, and
no attempt for a second after each failure, so a turn does not wait on every
token) and clients resync from the database by sequence number.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from chat import live

EVENT_HANDLER = "chat.event"  # dispatched to ConversationConsumer.chat_event


def group_name(conversation_id: Any) -> str:
    hex_id = conversation_id.hex if hasattr(conversation_id, "hex") else str(conversation_id)
    return f"conv.{hex_id.replace('-', '')}"


def group_channel(group: str) -> str:
    """The Redis channel the pub/sub layer uses for a group (its `_get_group_channel_name`)."""
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    return f"{config.get('prefix', 'asgi')}__group__{group}"


def encode(conversation_id: Any, event: Any) -> tuple[str, bytes]:
    """The channel and payload of an event: what `group_send` would publish."""
    message = {"type": EVENT_HANDLER, "event": dict(event)}
    return group_channel(group_name(conversation_id)), get_channel_layer().serialize(message)


def publish(conversation_id: Any, *events: Any) -> None:
    """Send events, in order, to every websocket watching the conversation
    (several events: one round trip)."""
    if live.outage.paused() or not events:
        return
    try:
        pipe = live.redis_client().pipeline(transaction=False)
        for event in events:
            pipe.publish(*encode(conversation_id, event))
        pipe.execute()
    except redis.RedisError as exc:
        live.outage.failed("could not publish an event", exc)
    else:
        live.outage.worked()


def publish_on_commit(conversation_id: Any, *events: Any) -> None:
    """Publish events once the current transaction commits (never a row the
    database might still roll back); several events go out in one round trip."""
    transaction.on_commit(lambda: publish(conversation_id, *events))
