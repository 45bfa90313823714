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
caps (sandbox/image/outputs.py), and time limits are enforced on the host
(sandbox/bridged.py, shared with the Kubernetes backend).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import docker
import requests

from sandbox import profile
from sandbox.api import (
    Limits,
    SandboxError,
)
from sandbox.backend import Placed
from sandbox.bridged import BridgedSandbox
from sandbox.connection import Connection
from sandbox.runtime import choose_runtime

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

    def __init__(
        self,
        client: docker.DockerClient,
        runtime: str | None = "auto",
        host: str = "",
        answer_timeout: float = 5.0,
    ):
        """runtime: as DockerSandbox takes it; host: how records name this engine
        (its URL; "" for the default engine); answer_timeout: how long `answers`
        waits for the engine's ping."""
        self.client = client
        self.runtime = runtime
        self.host = host
        self.answer_timeout = answer_timeout

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

    def answers(self) -> bool:
        """The engine's /_ping within answer_timeout (the client's own timeout is a
        minute: too long to wait on an engine that hangs)."""
        api = self.client.api
        try:
            ping = api._get(api._url("/_ping"), timeout=self.answer_timeout)
            return bool(api._result(ping) == "OK")
        except ENGINE_ERRORS:
            return False


class DockerSandbox(BridgedSandbox):
    """A running sandbox container and its bridge connection (cells, control
    requests and files: BridgedSandbox)."""

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
        self._attached: Any = None  # docker-py's wrapper of the attach stream (see _attach)
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
        # Kept for as long as the stream is used: docker-py hangs the HTTP response on
        # this wrapper to keep it alive, and a response collected by the garbage
        # collector closes its connection -- the socket under a live sandbox.
        self._attached = attached
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

    def _connect(self, container_id: str) -> None:
        """Attach to a running sandbox (one made warm by another process)."""
        self.id = container_id
        try:
            conn = self._attach(self._key())
        except ENGINE_ERRORS as exc:
            raise SandboxError(
                f"Could not reach sandbox {container_id[:12]}: {exc}", permanent=False
            ) from exc
        self._take_over(conn, container_id[:12])

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
