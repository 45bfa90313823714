"""Deliver events to a conversation's websocket group from synchronous code.

Workers and views are synchronous; the channel layer is asyncio. One event
loop in a daemon thread per process owns the layer's Redis connection, and a
FIFO queue per conversation keeps its events in the order they were published
(token deltas must not overtake the message that completes them).
Publishing never blocks the caller; `flush()` waits until the queue is sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

EVENT_HANDLER = "chat.event"  # dispatched to ConversationConsumer.chat_event
IDLE_SECONDS = 60.0  # a group's queue and task go away after this long without events


def group_name(conversation_id: Any) -> str:
    hex_id = conversation_id.hex if hasattr(conversation_id, "hex") else str(conversation_id)
    return f"conv.{hex_id.replace('-', '')}"


class _Publisher:
    """One FIFO per group (a conversation's events keep their order) drained by
    its own task, so a busy conversation or a slow Redis round trip does not
    hold up the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._pending = 0
        self._drained: asyncio.Event | None = None
        self._failing = False

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._drained = asyncio.Event()
                self._drained.set()
                ready.set()
                loop.run_forever()

            threading.Thread(target=run, name="channel-publisher", daemon=True).start()
            ready.wait()
            self._loop = loop
            return loop

    def _enqueue(self, group: str, message: dict[str, Any]) -> None:
        assert self._drained is not None
        self._pending += 1
        self._drained.clear()
        queue = self._queues.get(group)
        if queue is None:
            queue = self._queues[group] = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._pump(group, queue))
        queue.put_nowait(message)

    async def _pump(self, group: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        assert self._drained is not None
        layer = get_channel_layer()
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), IDLE_SECONDS)
            except TimeoutError:
                if queue.empty():  # nothing came for a while: let the group go
                    del self._queues[group]
                    return
                continue
            try:
                await layer.group_send(group, message)
                self._failing = False
            except Exception as exc:
                # At-most-once by design: clients resync from the database. One
                # warning per outage, not one per token.
                if not self._failing:
                    log.warning(
                        "could not publish to %s: %r (muted until it works again)", group, exc
                    )
                self._failing = True
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._drained.set()

    def publish(self, group: str, event: dict[str, Any]) -> None:
        loop = self._start()
        message = {"type": EVENT_HANDLER, "event": event}
        loop.call_soon_threadsafe(self._enqueue, group, message)

    def flush(self, timeout: float = 5.0) -> None:
        if self._loop is None or self._drained is None:
            return
        drained = self._drained

        async def wait() -> None:
            await drained.wait()

        done: Future[None] = asyncio.run_coroutine_threadsafe(wait(), self._loop)
        try:
            done.result(timeout)
        except TimeoutError:
            log.warning("channel publisher did not drain within %.1fs", timeout)


_publisher = _Publisher()


def publish(conversation_id: Any, event: Any) -> None:
    """Queue an event for every websocket watching the conversation."""
    _publisher.publish(group_name(conversation_id), dict(event))


def flush(timeout: float = 5.0) -> None:
    """Wait until everything published so far has been handed to the channel layer."""
    _publisher.flush(timeout)
