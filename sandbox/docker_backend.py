"""Sandboxes as Docker containers, driven through the Docker API attach stream.

The container has no network interface, no capabilities, a read-only root,
size-capped tmpfs for /tmp and /workspace, a non-root uid, pids/memory/CPU/
ulimit caps, an empty environment and no log (sandbox/profile.py); the bridge
is PID 1 and hides itself from the kernel's code (sandbox/image/bridge.py). The
host talks to the bridge over the container's stdin/stdout: no port, no shared path, no
`docker exec`, the same for a local or remote daemon and under gVisor, which
is the default runtime wherever the engine has it (sandbox/runtime.py).

Everything the bridge says is untrusted: lines, replies and transfers are
bounded in sandbox/connection.py, outputs are re-checked against the cell
caps (sandbox/image/outputs.py), and time limits are enforced here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import docker
import requests

from sandbox import profile
from sandbox.api import (
    ExecutionResult,
    Limits,
    OnOutput,
    Poll,
    SandboxError,
    Status,
)
from sandbox.backend import Placed
from sandbox.connection import Connection, Message, Request, wait_until
from sandbox.image.outputs import CellCaps
from sandbox.runtime import choose_runtime
from sandbox.transfers import MAX_COUNT, FileTransfers

log = logging.getLogger(__name__)
# What a call to the engine can raise: its API errors, and the HTTP client's own
# (a busy engine answering after docker-py's read timeout raises requests' ReadTimeout).
ENGINE_ERRORS = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    ConnectionError,
)

LABEL = "codeact.managed"
# The bridge signs its lines with a key the host sends first; a process that
# attaches later reads it from this label (the sandbox cannot see its labels).
KEY_LABEL = "codeact.bridge-key"
CONTROL_TIMEOUT = 30.0
POLL_INTERVAL = 0.05  # how often a running cell calls its `poll` (Stop within 0.5 s)


def managed_containers(client: docker.DockerClient, **labels: str) -> list[Any]:
    """Every sandbox container (running or not) carrying these labels."""
    filters = [f"{LABEL}=1", *(f"{k}={v}" for k, v in labels.items())]
    return list(client.containers.list(all=True, filters={"label": filters}))


def docker_client(base_url: str | None = None, timeout: float = 60) -> docker.DockerClient:
    """A client of the engine at base_url (empty: DOCKER_HOST or the local socket);
    `timeout` bounds each API call, in seconds."""
    if base_url:
        return docker.DockerClient(base_url=base_url, version="auto", timeout=timeout)
    return docker.from_env(version="auto", timeout=timeout)


def age_seconds(container: Any) -> float:
    """Seconds since Docker created the container (inspect gives RFC 3339 with
    nanoseconds, the list endpoint a Unix time)."""
    created = container.attrs.get("Created")
    if isinstance(created, int | float):
        return datetime.now(UTC).timestamp() - float(created)
    if isinstance(created, str) and created:
        stamp = created.rstrip("Z").split(".")[0]  # datetime has no nanoseconds
        born = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
        return (datetime.now(UTC) - born).total_seconds()
    return float("inf")  # unknown: old enough


class DockerBackend:
    """Sandboxes as containers on one Docker engine (sandbox.backend.Backend)."""

    kind = "docker"

    def __init__(self, client: docker.DockerClient, runtime: str | None = "auto", host: str = ""):
        """runtime: as DockerSandbox takes it; host: how records name this engine
        (its URL; "" for the default engine)."""
        self.client = client
        self.runtime = runtime
        self.host = host

    def start(
        self,
        image: str,
        limits: Limits,
        labels: dict[str, str],
        web: profile.WebAccess | None = None,
    ) -> DockerSandbox:
        return DockerSandbox(self.client, image, limits, labels, runtime=self.runtime, web=web)

    def attach(self, sandbox_id: str, image: str, limits: Limits) -> DockerSandbox:
        return DockerSandbox(self.client, image, limits, {}, container_id=sandbox_id)

    def remove(self, sandbox_id: str) -> None:
        try:
            self.client.api.remove_container(sandbox_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if not (exc.status_code == 409 and "already in progress" in str(exc)):
                raise SandboxError(
                    f"Could not remove {sandbox_id[:12]}: {exc}", permanent=False
                ) from exc
        except ENGINE_ERRORS as exc:
            raise SandboxError(
                f"Could not remove {sandbox_id[:12]}: {exc}", permanent=False
            ) from exc

    def list(self, labels: dict[str, str]) -> list[Placed]:
        try:
            found = managed_containers(self.client, **labels)
        except ENGINE_ERRORS as exc:
            raise SandboxError(f"Could not list sandboxes: {exc}", permanent=False) from exc
        return [Placed(c.id, c.status == "running", c.status, age_seconds(c)) for c in found]

    def answers(self, timeout: float = 5.0) -> bool:
        """The engine's /_ping within `timeout` (the client's own timeout is a
        minute: too long to wait on an engine that hangs)."""
        api = self.client.api
        try:
            return bool(api._result(api._get(api._url("/_ping"), timeout=timeout)) == "OK")
        except ENGINE_ERRORS:
            return False


class DockerSandbox(FileTransfers):
    """A running sandbox container and its bridge connection (files: FileTransfers)."""

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        limits: Limits,
        labels: dict[str, str],
        runtime: str | None = None,
        container_id: str | None = None,
        web: profile.WebAccess | None = None,
    ) -> None:
        """Start a new sandbox container, or attach to a running one (container_id).

        runtime: "auto" (runsc where the engine has it, else runc), "runsc",
        "runc", or None for the engine's default. web: join this egress network
        (web access through the proxy); None: no network at all.
        """
        self.client = client
        self.image = image
        self.limits = limits
        self.labels = {LABEL: "1", **labels}
        self.runtime = runtime
        self.web = web
        self.id = ""
        self.address = ""  # on the egress network; "" without web access
        self._conn: Connection | None = None
        self._interrupt_at: float | None = None
        self.started_at = 0.0
        if container_id:
            self._connect(container_id)
            return
        if runtime is not None:
            try:
                self.runtime = choose_runtime(client, runtime).name
                if web is not None and self.runtime == "runsc":
                    self.runtime = self._networked_gvisor()
            except ENGINE_ERRORS as exc:
                raise SandboxError(f"Could not ask the engine: {exc}", permanent=False) from exc
        self._start()

    def _networked_gvisor(self) -> str:
        runtimes = self.client.info().get("Runtimes") or {}
        if profile.RUNSC_WITH_NETWORK not in runtimes:
            raise SandboxError(
                "Web access needs gVisor registered with a network stack as "
                f"'{profile.RUNSC_WITH_NETWORK}' in the Docker engine (scripts/bootstrap does "
                "it), or CODEACT_SANDBOX_RUNTIME=runc.",
                permanent=True,
            )
        return profile.RUNSC_WITH_NETWORK

    # --- lifecycle -------------------------------------------------------------

    def _start(self) -> None:
        api = self.client.api
        self._interrupt_at = None
        started = time.monotonic()
        key = secrets.token_hex(32)
        try:
            created = api.create_container(
                self.image,
                labels={**self.labels, KEY_LABEL: key},
                host_config=profile.host_config(api, self.limits, self.runtime, self.web),
                **profile.container_options(self.limits, self.web),
            )
            self.id = created["Id"]
            conn = self._attach(key)
            api.start(self.id)
            conn.send_line({"key": key})
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"The sandbox image {self.image} is missing; run scripts/build-sandbox-image.",
                permanent=True,
            ) from None
        except ENGINE_ERRORS as exc:
            self.close()  # created, perhaps, before the engine stopped answering
            raise SandboxError(f"Could not start a sandbox: {exc}", permanent=False) from exc
        if not conn.ready.wait(self.limits.start_timeout) or conn.closed.is_set():
            detail = "; ".join(conn.stderr)[-500:]
            self.close()
            raise SandboxError(
                f"The sandbox did not start: {detail or 'timed out'}", permanent=False
            )
        if self.web is not None:
            try:
                self.address = self._address()
            except (SandboxError, *ENGINE_ERRORS) as exc:
                self.close()
                raise SandboxError(
                    f"The sandbox has no web address: {exc}", permanent=False
                ) from exc
        self.started_at = time.monotonic() - started

    def _attach(self, key: str) -> Connection:
        attached = self.client.api.attach_socket(
            self.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        sock = getattr(attached, "_sock", attached)
        self._conn = Connection(sock, self.limits.line_bytes, self.id[:12], key)
        return self._conn

    def _address(self) -> str:
        """The container's address on its egress network (how the proxy knows it)."""
        assert self.web is not None
        networks = self.client.api.inspect_container(self.id)["NetworkSettings"]["Networks"]
        address = str((networks.get(self.web.network) or {}).get("IPAddress") or "")
        if not address:
            raise SandboxError(
                f"The sandbox got no address on {self.web.network}.", permanent=False
            )
        return address

    def _key(self) -> str:
        """The signing key of a running container (another process may have started it)."""
        labels = self.client.api.inspect_container(self.id)["Config"].get("Labels") or {}
        return str(labels.get(KEY_LABEL, ""))

    @property
    def warm(self) -> threading.Event:
        """Set once numpy, pandas and matplotlib are imported (or the sandbox is gone)."""
        assert self._conn is not None
        return self._conn.warm

    def _connect(self, container_id: str) -> None:
        """Attach to a running sandbox (one made warm by another process)."""
        self.id = container_id
        try:
            conn = self._attach(self._key())
        except ENGINE_ERRORS as exc:
            raise SandboxError(
                f"Could not reach sandbox {container_id[:12]}: {exc}", permanent=False
            ) from exc
        conn.ready.set()
        conn.warm.set()
        if not self.ping():
            self.detach()
            raise SandboxError(f"Sandbox {container_id[:12]} does not answer.", permanent=False)

    def detach(self) -> None:
        """Let go of the container without stopping it (another process may attach)."""
        if self._conn is not None:
            self._conn.close()

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._conn.closed.is_set()

    def close(self) -> None:
        """Remove the container."""
        self.detach()
        if self.id:
            try:
                self.client.api.remove_container(self.id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "already in progress" in str(exc):
                    return  # someone else (the watchdog's own removal) is on it
                log.warning("could not remove sandbox %s", self.id[:12], exc_info=True)
            except ENGINE_ERRORS:
                log.warning("could not remove sandbox %s", self.id[:12], exc_info=True)

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

        try:
            status, done = self._wait_cell(request, take, started + limit, poll)
        finally:
            if self._conn is not None:
                self._conn.forget(request)
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
            detail=str(done.get("error", ""))[:500],
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
        log.info("sandbox %s: kernel did not yield to the interrupt; restarting", self.id[:12])
        with contextlib.suppress(SandboxError):  # the connection is gone: the cell sees eof
            self._open("restart", register=False)

    def _kill(self, why: str) -> None:
        """The bridge does not answer: this sandbox is dead now, its container removed
        in the background (removing a frozen gVisor sandbox can take seconds)."""
        log.warning("sandbox %s: %s; removing it", self.id[:12], why)
        self.detach()
        # The id is taken now: a restart() meanwhile gives this object a new container,
        # which the retries below must not touch.
        dead = self.id
        threading.Thread(
            target=self._remove, args=(dead,), name=f"remove-{dead[:12]}", daemon=True
        ).start()

    def _remove(self, container_id: str, attempts: int = 5) -> None:
        """Remove the container, retrying: a frozen (paused) gVisor sandbox can refuse
        the first kill ("is zombie and can not be killed") and go on the next."""
        api = self.client.api
        for attempt in range(attempts):
            try:
                api.remove_container(container_id, force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.DockerException as exc:
                last = exc
            with contextlib.suppress(docker.errors.DockerException):
                api.unpause(container_id)
            time.sleep(2**attempt)
        log.warning("could not remove sandbox %s: %s", container_id[:12], last)

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

    def memory_bytes(self) -> int | None:
        """Current memory use of the container, from its cgroup."""
        try:
            stats = self.client.api.stats(self.id, stream=False)
        except docker.errors.DockerException:
            return None
        usage = stats.get("memory_stats", {})
        value = usage.get("usage")
        cache = usage.get("stats", {}).get("cache", usage.get("stats", {}).get("inactive_file", 0))
        return int(value) - int(cache or 0) if isinstance(value, int) else None


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
