"""Noticing Stop and keeping leases: one thread per worker process asks the
database, five times a second, which of the process's running turns the user
stopped, and renews their leases."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from chat.actions.turns import ended_turns, renew_leases, stopped_turns

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # Stop must close the model stream within 0.5 s


@dataclass
class Watched:
    """What the watch knows of one running turn, and tells it."""

    stop: threading.Event = field(default_factory=threading.Event)  # the user pressed Stop
    lost: threading.Event = field(default_factory=threading.Event)  # the lease is gone
    beat_at: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        """The turn's thread is alive and working."""
        self.beat_at = time.monotonic()

    def stopped(self) -> bool:
        return self.stop.is_set() or self.lost.is_set()


class StopWatch:
    """One query for all of a process's running turns, where each turn asking for
    itself cost five queries a second per turn.

    Leases are renewed here too, every third of their length, so a turn keeps
    its lease while its thread blocks in a bounded wait (a sandbox start, a file
    capture, the grace after a timeout). A turn whose thread shows no sign of
    life for CODEACT_TURN_STALL_SECONDS is not renewed: its lease runs out and
    the sweeper closes it. A turn whose lease is gone is told (`lost`).
    """

    def __init__(self, interval: float = STOP_POLL_SECONDS) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._turns: dict[int, Watched] = {}
        self._thread: threading.Thread | None = None
        self._renewed_at = 0.0

    def watch(self, turn_id: int) -> Watched:
        """Start watching a turn this process now runs."""
        with self._lock:
            watched = self._turns.setdefault(turn_id, Watched())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="stop-watch", daemon=True)
                self._thread.start()
        return watched

    def forget(self, turn_id: int) -> None:
        with self._lock:
            self._turns.pop(turn_id, None)

    def _run(self) -> None:
        connected = failing = False
        while True:
            time.sleep(self.interval)
            with self._lock:
                watched = dict(self._turns)
            try:
                if not watched:
                    if connected:  # an idle process holds no connection for this
                        connected = False
                        connection.close()
                    continue
                connected = True
                self._renew_if_due(watched)
                stopped = stopped_turns(list(watched))
            except Exception as exc:  # the database went away: try again next time
                if not failing:
                    log.warning("could not check on running turns: %r", exc)
                failing = True
                with contextlib.suppress(Exception):
                    connection.close()
                continue
            failing = False
            for turn_id in stopped:
                watched[turn_id].stop.set()

    def _renew_if_due(self, watched: dict[int, Watched]) -> None:
        now = time.monotonic()
        if now - self._renewed_at < settings.CODEACT_TURN_LEASE_SECONDS / 3:
            return
        self._renewed_at = now
        alive = [
            turn_id
            for turn_id, turn in watched.items()
            if now - turn.beat_at < settings.CODEACT_TURN_STALL_SECONDS and not turn.lost.is_set()
        ]
        gone = set(alive) - renew_leases(alive)
        # A turn that has just ended by its own thread's hand is still watched until
        # that thread forgets it: it needs telling, but it lost nothing.
        ended = ended_turns(gone) if gone else set()
        for turn_id in gone:
            if turn_id not in ended:
                log.warning("turn %s: the lease is gone; the turn stops here", turn_id)
            watched[turn_id].lost.set()


stop_watch = StopWatch()
