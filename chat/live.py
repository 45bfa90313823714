"""The text of replies still being streamed, kept in Redis as it grows.

The database copy of a streaming reply is flushed every
CODEACT_FLUSH_INTERVAL, so it lags the token deltas. A client that
reconnects subscribes first and reads the snapshot second; reading the live
text (appended before each delta is published) guarantees the snapshot
reaches at least as far as the first delta that client receives: no gap.

Redis is a cache here, not the record: when it is unreachable these
functions log and carry on (the database copy, flushed every
CODEACT_FLUSH_INTERVAL, is what a client then gets), and a key that vanished
with a Redis restart is rewritten whole, never continued as a mere suffix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

log = logging.getLogger(__name__)

TTL_SECONDS = 6 * 3600


@lru_cache(maxsize=1)
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def _key(message_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:live:{message_id}"


def append(message_id: int, text: str, size: int, whole: Callable[[], str]) -> None:
    """Append a delta; `size` is the UTF-8 length the value must have after it.

    If Redis lost the key (a restart), APPEND starts a new value from this
    delta alone; that is detected by its length and the whole text is set.
    """
    key = _key(message_id)
    try:
        pipe = _client().pipeline(transaction=False)
        pipe.append(key, text.encode())
        pipe.expire(key, TTL_SECONDS)
        length, _ = pipe.execute()
        if length != size:
            _client().set(key, whole().encode(), ex=TTL_SECONDS)
    except redis.RedisError as exc:
        log.warning("live text of message %s not updated: %s", message_id, exc)


def read(message_ids: list[int]) -> dict[int, str]:
    if not message_ids:
        return {}
    try:
        values = _client().mget([_key(m) for m in message_ids])
    except redis.RedisError as exc:
        log.warning("live text unavailable, using the saved copy: %s", exc)
        return {}
    return {
        m: v.decode() if isinstance(v, bytes) else str(v)
        for m, v in zip(message_ids, values, strict=True)
        if v is not None
    }


def lock(name: str, ttl: int) -> Any:
    """A Redis lock shared by every process of this deployment."""
    return _client().lock(f"{settings.CHANNEL_PREFIX}:lock:{name}", timeout=ttl)


def clear(message_id: int) -> None:
    try:
        _client().delete(_key(message_id))
    except redis.RedisError as exc:  # it expires on its own
        log.warning("live text of message %s not cleared: %s", message_id, exc)
