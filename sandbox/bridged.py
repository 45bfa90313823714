"""What every bridge-driven sandbox does the same way, whatever runs its container.

`BridgedSandbox` holds a `Connection` to the bridge and implements the
`sandbox.api.Sandbox` calls on it: a cell with its time limit and the
interrupt → restart → remove escalation, Stop through `poll`, control requests,
files (the FileTransfers mixin). A backend supplies how a sandbox starts
(`_start`), how a dead one is removed (`_remove`) and `close`.

DockerSandbox (sandbox/docker_backend.py) and KubernetesSandbox
(sandbox/kubernetes_backend.py) are its two kinds. Nothing here imports Django.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from sandbox.api import ExecutionResult, Limits, OnOutput, Poll, SandboxError, Status
from sandbox.connection import Connection, Message, Request, wait_until
from sandbox.image.outputs import CellCaps
from sandbox.transfers import MAX_COUNT, FileTransfers

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = 30.0
POLL_INTERVAL = 0.05  # how often a running cell calls its `poll` (Stop within 0.5 s)


class BridgedSandbox(FileTransfers, abc.ABC):
    """A sandbox reached through its bridge's connection (files: FileTransfers)."""

    id: str
    limits: Limits
    _conn: Connection | None
    _interrupt_at: float | None

    @abc.abstractmethod
    def _start(self) -> None:
        """Start a new sandbox; returns once its bridge is ready."""

    @abc.abstractmethod
    def _remove(self, sandbox_id: str) -> None:
        """Remove that sandbox, retrying for a while (it may be frozen); log a failure."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove the sandbox."""

    @property
    def warm(self) -> threading.Event:
        """Set once the preloads are imported (or the sandbox is gone)."""
        assert self._conn is not None
        return self._conn.warm

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._conn.closed.is_set()

    @property
    def name(self) -> str:
        """How logs name the sandbox."""
        return self.id[:12]

    def _kill(self, why: str) -> None:
        """The bridge does not answer: this sandbox is dead now, removed in the
        background (removing a frozen gVisor sandbox can take seconds)."""
        log.warning("sandbox %s: %s; removing it", self.name, why)
        self.detach()
        # The id is taken now: a restart() meanwhile gives this object a new sandbox,
        # which the retries must not touch.
        dead = self.id
        threading.Thread(
            target=self._remove, args=(dead,), name=f"remove-{self.name}", daemon=True
        ).start()

    def _take_over(self, conn: Connection, name: str) -> None:
        """A connection to a sandbox another process started (ready and warm then):
        SandboxError unless its bridge answers now."""
        conn.ready.set()
        conn.warm.set()
        if not self.ping():
            self.detach()
            raise SandboxError(f"Sandbox {name} does not answer.", permanent=False)

    def detach(self) -> None:
        """Let go of the sandbox without stopping it (another process may attach)."""
        if self._conn is not None:
            self._conn.close()

    # --- requests -------------------------------------------------------------

    def _open(self, op: str, register: bool = True, **fields: Any) -> Request:
        if self._conn is None or not self.alive:
            raise SandboxError("The sandbox has stopped.", permanent=False)
        try:
            return self._conn.open(op, register, **fields)
        except ConnectionError as exc:
            raise SandboxError(f"The sandbox is not reachable: {exc}", permanent=False) from exc

    def _control(
        self,
        op: str,
        timeout: float = CONTROL_TIMEOUT,
        on_chunk: Callable[[Any], None] | None = None,
        **fields: Any,
    ) -> Message:
        """Send a request and wait for its done; chunks go to on_chunk as they come."""
        request = self._open(op, **fields)
        try:
            deadline = time.monotonic() + timeout
            while True:
                message = wait_until(request, deadline, time.monotonic)
                if message is None:
                    raise SandboxError(
                        f"The sandbox did not answer '{op}' in time.", permanent=False
                    )
                kind = message.get("type")
                if kind == "eof":
                    raise SandboxError("The sandbox stopped.", permanent=False)
                if kind == "chunk" and on_chunk is not None:
                    on_chunk(message.get("data"))
                    deadline = time.monotonic() + timeout  # a transfer that moves is alive
                elif kind == "done":
                    return message
        finally:
            assert self._conn is not None
            self._conn.forget(request)

    # --- the Sandbox interface ------------------------------------------------

    def execute(
        self,
        code: str,
        on_output: OnOutput | None = None,
        timeout: float | None = None,
        poll: Poll | None = None,
    ) -> ExecutionResult:
        """Run code in the kernel; see sandbox.api.Sandbox.execute."""
        limit = self.limits.cell_timeout if timeout is None else timeout
        started = time.monotonic()
        self._interrupt_at = None
        request = self._open("execute", code=code, limits=self.limits.cell_limits())
        caps = CellCaps.from_limits(self.limits.cell_limits())
        outputs: list[dict[str, Any]] = []

        def take(output: Any) -> None:
            kept = caps.take(output)
            if kept is not None:
                outputs.append(kept)
                if on_output is not None:
                    on_output(kept)

        streams = self._conn.reattached if self._conn is not None else 0
        try:
            status, done = self._wait_cell(request, take, started + limit, poll)
        finally:
            if self._conn is not None:
                self._conn.forget(request)
        detail = str(done.get("error", ""))[:500]
        if self._conn is not None and self._conn.reattached != streams and not detail:
            detail = (
                "The connection to the sandbox was re-established while the cell ran: "
                "some of its output may be missing."
            )
        dropped = {k: v + request.overflow.get(k, 0) for k, v in caps.dropped.items()}
        return ExecutionResult(
            status=status,
            execution_count=_int_or_none(done.get("execution_count")),
            duration=time.monotonic() - started,
            outputs=outputs,
            dropped_stream_bytes=dropped["stream_bytes"] + _count(done.get("dropped_stream_bytes")),
            dropped_displays=dropped["displays"] + _count(done.get("dropped_displays")),
            dropped_images=dropped["images"] + _count(done.get("dropped_images")),
            dropped_display_bytes=dropped["display_bytes"]
            + _count(done.get("dropped_display_bytes")),
            kernel_restarted=bool(done.get("restarted")) or status in ("died",),
            detail=detail,
        )

    def _wait_cell(
        self, request: Request, take: Any, deadline: float, poll: Poll | None
    ) -> tuple[Status, Message]:
        """Wait for the cell's done; past its limit (or on Stop) escalate, every step bounded.

        Interrupt; after the grace, restart the kernel; after another grace
        without an answer the bridge is taken for dead: the container is
        removed and the cell ends `died`. Every wait blocks on the reply queue
        until the next thing to do, so nothing spins.
        """
        grace = self.limits.interrupt_grace
        timed_out = stopped = restarted = False
        restart_at = kill_at = math.inf
        next_poll = time.monotonic() + POLL_INTERVAL if poll is not None else math.inf
        while True:
            now = time.monotonic()
            running = not (timed_out or stopped)
            if running and now >= deadline:
                timed_out = True
                self.interrupt()
            elif running and now >= next_poll and poll is not None:
                next_poll = now + POLL_INTERVAL
                if poll():
                    stopped = True
                    self.interrupt()
            if not restarted and self._interrupt_at is not None:
                restart_at = self._interrupt_at + grace
            if now >= restart_at:
                restarted, restart_at, kill_at = True, math.inf, now + grace
                self._request_restart()
            if now >= kill_at:
                self._kill(f"no answer {2 * grace:.1f}s after an interrupt and a restart")
                return "died", {"error": "The sandbox stopped answering and was removed."}
            running = not (timed_out or stopped)
            wake = min(deadline if running else math.inf, next_poll, restart_at, kill_at)
            message = wait_until(request, max(wake, now + 0.001), time.monotonic)
            if message is None:
                continue
            kind = message.get("type")
            if kind == "output":
                take(message.get("output"))
            elif kind == "done":
                if restarted:
                    message["restarted"] = True
                return _status(str(message.get("status")), timed_out, stopped), message
            elif kind == "eof":
                return "died", {"error": "The sandbox stopped; its kernel state is lost."}

    def _request_restart(self) -> None:
        """The kernel ignored the interrupt: have the bridge kill it and start a fresh one."""
        log.info("sandbox %s: kernel did not yield to the interrupt; restarting", self.name)
        with contextlib.suppress(SandboxError):  # the connection is gone: the cell sees eof
            self._open("restart", register=False)

    def interrupt(self) -> None:
        """Interrupt the running cell; it is killed after the grace period."""
        if self._interrupt_at is None:
            self._interrupt_at = time.monotonic()
        with contextlib.suppress(SandboxError):
            self._open("interrupt", register=False)

    def restart(self) -> None:
        """A fresh kernel, in a fresh container if the old one is gone."""
        if not self.alive:
            self.close()
            self._start()
            return
        self._control("restart", timeout=self.limits.start_timeout)

    def ping(self) -> bool:
        try:
            return bool(self._control("ping", timeout=5).get("kernel_alive"))
        except SandboxError:
            return False


def _status(raw: str, timed_out: bool, stopped: bool = False) -> Status:
    if timed_out:
        return "timeout"
    if stopped and raw != "died":
        return "interrupted"
    if raw == "ok":
        return "ok"
    if raw == "interrupted":
        return "interrupted"
    if raw == "died":
        return "died"
    return "error"


def _count(value: Any) -> int:
    return value if type(value) is int and 0 <= value <= MAX_COUNT else 0


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None
