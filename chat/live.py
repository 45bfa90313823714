"""The text of replies still being streamed, kept in Redis as it grows.

The database copy of a streaming reply is flushed every
CODEACT_FLUSH_INTERVAL, so it lags the token deltas. A client that
reconnects subscribes first and reads the snapshot second; reading the live
text (appended before each delta is published) guarantees the snapshot
reaches at least as far as the first delta that client receives: no gap.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

TTL_SECONDS = 6 * 3600


@lru_cache(maxsize=1)
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def _key(message_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:live:{message_id}"


def append(message_id: int, text: str) -> None:
    pipe = _client().pipeline(transaction=False)
    pipe.append(_key(message_id), text.encode())
    pipe.expire(_key(message_id), TTL_SECONDS)
    pipe.execute()


def read(message_ids: list[int]) -> dict[int, str]:
    if not message_ids:
        return {}
    values = _client().mget([_key(m) for m in message_ids])
    return {
        m: v.decode() if isinstance(v, bytes) else str(v)
        for m, v in zip(message_ids, values, strict=True)
        if v is not None
    }


def lock(name: str, ttl: int) -> Any:
    """A Redis lock shared by every process of this deployment."""
    return _client().lock(f"{settings.CHANNEL_PREFIX}:lock:{name}", timeout=ttl)


def clear(message_id: int) -> None:
    _client().delete(_key(message_id))
