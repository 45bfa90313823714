"""Events published from synchronous code reach consumers of the Channels layer.

`broadcast` writes to Redis directly, on the pub/sub layer's own group channel
and message format; these tests hold it to that against the real layer and Redis.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.conf import settings as django_settings

from chat import broadcast, live


async def _subscribe(conversation_id: uuid.UUID) -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(broadcast.group_name(conversation_id), channel)
    await asyncio.sleep(0.1)  # the SUBSCRIBE reaches Redis before anything is published
    return layer, channel


async def test_a_consumer_of_the_group_receives_published_events_in_order() -> None:
    conversation_id = uuid.uuid4()
    layer, channel = await _subscribe(conversation_id)
    first = {"type": "delta", "message_id": 7, "offset": 0, "text": "héllo 👋"}
    others = [{"type": "turn", "seq": n, "turn": {"id": n, "status": "running"}} for n in (2, 3)]
    await asyncio.to_thread(broadcast.publish, conversation_id, first)
    await asyncio.to_thread(broadcast.publish, conversation_id, *others)  # one pipeline
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(3)]
    assert received == [{"type": broadcast.EVENT_HANDLER, "event": e} for e in [first, *others]]
    await layer.group_discard(broadcast.group_name(conversation_id), channel)


async def test_events_of_another_conversation_do_not_arrive() -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    layer, channel = await _subscribe(mine)
    await asyncio.to_thread(broadcast.publish, theirs, {"type": "pong"})
    await asyncio.to_thread(broadcast.publish, mine, {"type": "deleted"})
    received = await asyncio.wait_for(layer.receive(channel), 5)
    assert received["event"] == {"type": "deleted"}
    await layer.group_discard(broadcast.group_name(mine), channel)


def test_the_group_channel_is_the_one_the_layer_subscribes_to() -> None:
    from channels_redis.pubsub import RedisPubSubLoopLayer

    config = django_settings.CHANNEL_LAYERS["default"]["CONFIG"]
    loop_layer = RedisPubSubLoopLayer(channel_layer=get_channel_layer(), **config)
    group = broadcast.group_name(uuid.uuid4())
    assert broadcast.group_channel(group) == loop_layer._get_group_channel_name(group)


@pytest.fixture
def unreachable_redis(settings: Any) -> Any:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    live.redis_client.cache_clear()
    yield
    live.redis_client.cache_clear()
    live.outage.worked()


def test_an_unreachable_redis_drops_events_with_one_warning(
    unreachable_redis: None, caplog: pytest.LogCaptureFixture
) -> None:
    conversation_id = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="chat.live"):
        for n in range(5):
            broadcast.publish(conversation_id, {"type": "pong", "n": n})
            live.append(1, "x", n + 1, lambda: "x")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "muted until Redis answers again" in warnings[0].getMessage()
    assert live.outage.paused()  # the next second's events are not even tried
