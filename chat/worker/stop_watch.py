"""Noticing Stop: one thread per worker process asks the database, five times a
second, which of the process's running turns the user stopped."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from django.db import connection

from chat.actions.turns import stopped_turns

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # Stop must close the model stream within 0.5 s


class StopWatch:
    """One query for all of a process's running turns, where each turn asking for
    itself cost five queries a second per turn. A turn registers here and reads
    its event; it still renews its own lease, so a hung turn thread still lets its
    lease run out."""

    def __init__(self, interval: float = STOP_POLL_SECONDS) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._turns: dict[int, threading.Event] = {}
        self._thread: threading.Thread | None = None

    def watch(self, turn_id: int) -> threading.Event:
        """The event that is set once the user asks this turn to stop."""
        with self._lock:
            event = self._turns.setdefault(turn_id, threading.Event())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="stop-watch", daemon=True)
                self._thread.start()
        return event

    def forget(self, turn_id: int) -> None:
        with self._lock:
            self._turns.pop(turn_id, None)

    def _run(self) -> None:
        connected = failing = False
        while True:
            time.sleep(self.interval)
            with self._lock:
                ids = list(self._turns)
            try:
                if not ids:
                    if connected:  # an idle process holds no connection for this
                        connected = False
                        connection.close()
                    continue
                connected = True
                stopped = stopped_turns(ids)
            except Exception as exc:  # the database went away: try again next time
                if not failing:
                    log.warning("could not check for stopped turns: %r", exc)
                failing = True
                with contextlib.suppress(Exception):
                    connection.close()
                continue
            failing = False
            with self._lock:
                for turn_id in stopped:
                    if turn_id in self._turns:
                        self._turns[turn_id].set()


stop_watch = StopWatch()
