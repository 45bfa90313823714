"""A bound on how many sandboxes start at once on the engine, across all workers.

Fifty conversations that start their first cell in the same seconds ask the
engine for fifty containers at once; under gVisor it then answered some of
them after docker-py's 60 s timeout and those turns failed (the chaos soak).
Starting a few at a time and queueing the rest finishes every one sooner.

A start holds one of CODEACT_SANDBOX_STARTS_AT_ONCE PostgreSQL advisory locks
(session-level, so they outlive the transactions around them) while its
container is created and started and its kernel comes up; the others poll for
a free one, with backoff, for at most the sandbox start timeout. A worker that
dies mid-start loses its database connection and its slot with it.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import connection

from sandbox.api import SandboxError

# PostgreSQL's two-key advisory lock space, which never meets the one-key lock of
# the reservations (chat.worker.pool): (this class, slot number).
_SLOTS_CLASS = 0x636F_6465  # "code"
_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 1.0


@contextlib.contextmanager
def start_slot(wait: float) -> Iterator[int]:
    """Hold a start slot for the block (waiting up to `wait` seconds for one)."""
    slot = _acquire(wait)
    try:
        yield slot
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_SLOTS_CLASS, slot])


def _acquire(wait: float) -> int:
    slots = settings.CODEACT_SANDBOX_STARTS_AT_ONCE
    deadline = time.monotonic() + wait
    pause = _FIRST_PAUSE
    while True:
        # Random order: waiters spread over the slots instead of all trying slot 0.
        for slot in random.sample(range(slots), slots):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_SLOTS_CLASS, slot])
                if cursor.fetchone()[0]:
                    return slot
        if time.monotonic() + pause > deadline:
            raise SandboxError(
                f"The server is starting many Python sandboxes at once ({slots} at a time) "
                f"and this one waited {wait:.0f} s for its turn. Press Retry in a moment.",
                permanent=False,
            )
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, _LONGEST_PAUSE)
