"""Redis as this app's cache and bus: the text of replies still being streamed,
locks, and the connection that `broadcast` publishes events on.

The database copy of a streaming reply is flushed every
CODEACT_FLUSH_INTERVAL, so it lags the token deltas. A client that
reconnects subscribes first and reads the snapshot second; the live text is
appended in the same pipeline that publishes each delta, before the PUBLISH,
so the snapshot reaches at least as far as the first delta that client
receives: no gap.

Redis is a cache here, not the record: when it is unreachable these
functions log once per outage and carry on (the database copy is what a
client then gets), and for a second after each failure they do not try at
all, so a turn does not wait on Redis for every token. A key that vanished
with a Redis restart is rewritten whole, never continued as a mere suffix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

log = logging.getLogger(__name__)

TTL_SECONDS = 6 * 3600
RETRY_AFTER_SECONDS = 1.0  # after a failure, Redis is left alone this long


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """One thread-safe client (and connection pool) per process. Short timeouts:
    nothing here is worth holding a turn for."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


class _Outage:
    """Remembers a failing Redis: one warning per outage, a pause after each failure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._failing = False

    def paused(self) -> bool:
        return self._until > 0.0 and time.monotonic() < self._until

    def failed(self, what: str, exc: Exception) -> None:
        with self._lock:
            self._until = time.monotonic() + RETRY_AFTER_SECONDS
            if not self._failing:
                log.warning("%s: %r (muted until Redis answers again)", what, exc)
            self._failing = True

    def worked(self) -> None:
        if self._failing:
            with self._lock:
                if self._failing:
                    log.info("Redis answers again")
                self._failing = False
                self._until = 0.0


outage = _Outage()


def _key(message_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:live:{message_id}"


def append(
    message_id: int,
    text: str,
    size: int,
    whole: Callable[[], str],
    publish: tuple[str, bytes] | None = None,
) -> None:
    """Append a delta; `size` is the UTF-8 length the value must have after it.
    `publish` (a channel and payload: the delta's event) goes out in the same
    round trip, after the append.

    If Redis lost the key (a restart), APPEND starts a new value from this
    delta alone; that is detected by its length and the whole text is set.
    """
    if outage.paused():
        return
    key = _key(message_id)
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.append(key, text.encode())
        pipe.expire(key, TTL_SECONDS)
        if publish is not None:
            pipe.publish(*publish)
        length = pipe.execute()[0]
        if length != size:
            redis_client().set(key, whole().encode(), ex=TTL_SECONDS)
    except redis.RedisError as exc:
        outage.failed(f"live text of message {message_id} not updated", exc)
    else:
        outage.worked()


def read(message_ids: list[int]) -> dict[int, str]:
    if not message_ids:
        return {}
    try:
        values = redis_client().mget([_key(m) for m in message_ids])
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
    return redis_client().lock(f"{settings.CHANNEL_PREFIX}:lock:{name}", timeout=ttl)


def clear(message_id: int) -> None:
    try:
        redis_client().delete(_key(message_id))
    except redis.RedisError as exc:  # it expires on its own
        log.warning("live text of message %s not cleared: %s", message_id, exc)
