"""Deliver events to a conversation's websocket group from synchronous code.

Workers and views are synchronous; the channel layer is asyncio. One event
loop in a daemon thread per process owns the layer's Redis connection, and a
single FIFO queue keeps events of a conversation in the order they were
published (token deltas must not overtake the message that completes them).
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


def group_name(conversation_id: Any) -> str:
    hex_id = conversation_id.hex if hasattr(conversation_id, "hex") else str(conversation_id)
    return f"conv.{hex_id.replace('-', '')}"


class _Publisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._pump_task: asyncio.Task[None] | None = None

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._queue = asyncio.Queue()
                self._pump_task = loop.create_task(self._pump())
                ready.set()
                loop.run_forever()

            threading.Thread(target=run, name="channel-publisher", daemon=True).start()
            ready.wait()
            self._loop = loop
            return loop

    async def _pump(self) -> None:
        assert self._queue is not None
        layer = get_channel_layer()
        while True:
            group, message = await self._queue.get()
            try:
                await layer.group_send(group, message)
            except Exception:
                # At-most-once by design: clients resync from the database.
                log.warning("could not publish to %s", group, exc_info=True)
            finally:
                self._queue.task_done()

    def publish(self, group: str, event: dict[str, Any]) -> None:
        loop = self._start()
        assert self._queue is not None
        message = {"type": EVENT_HANDLER, "event": event}
        loop.call_soon_threadsafe(self._queue.put_nowait, (group, message))

    def flush(self, timeout: float = 5.0) -> None:
        if self._loop is None or self._queue is None:
            return
        done: Future[None] = asyncio.run_coroutine_threadsafe(self._queue.join(), self._loop)
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
