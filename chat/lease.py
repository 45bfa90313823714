"""The turn lease as a fence.

A worker holds a running turn by its lease; when the lease runs out (the
worker died, or stalled past it) the sweeper interrupts the turn and the user
may ask again. A worker thread that was only paused must then write nothing
more to the conversation. Every write of a turn's replies, cells, outputs and
files takes a sequence number (`Conversation.next_seq`), so that is where the
fence stands: inside `fenced(turn)`, taking a number of that conversation
first locks the turn row and checks it is still running, in the same
statement, or raises `LeaseLost` and the write's transaction rolls back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID


class LeaseLost(Exception):
    """This worker no longer holds the turn: the sweeper closed it."""


@dataclass(frozen=True)
class Fence:
    turn_id: int
    conversation_id: UUID


_current: ContextVar[Fence | None] = ContextVar("codeact_lease_fence", default=None)


def current(conversation_id: UUID) -> Fence | None:
    """The fence of the turn this thread runs, if it writes to this conversation."""
    fence = _current.get()
    return fence if fence is not None and fence.conversation_id == conversation_id else None


@contextlib.contextmanager
def fenced(turn: Any) -> Iterator[None]:
    """Writes to the turn's conversation in this block succeed only while the
    turn is still running (see the module docstring)."""
    token = _current.set(Fence(turn.pk, turn.conversation_id))
    try:
        yield
    finally:
        _current.reset(token)
