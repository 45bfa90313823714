"""Sandboxes as Docker containers, driven through the Docker API attach stream.

The container has no network interface, no capabilities, a read-only root,
size-capped tmpfs for /tmp and /workspace, a non-root uid, tini as PID 1,
pids/memory/CPU/ulimit caps and an empty environment. The host talks to the
bridge inside over the container's stdin/stdout: no port, no shared path, no
`docker exec`, the same for a local or remote daemon and under gVisor.

Everything the bridge says is untrusted (it shares a uid with the code it
runs): lines are size-capped, outputs are re-checked against the cell limits,
and time limits are enforced here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import logging
import queue
import secrets
import struct
import threading
import time
from collections import deque
from typing import Any

import docker
from docker.types import Ulimit

from sandbox.api import (
    IMAGE_MIMES,
    ExecutionResult,
    FileInfo,
    Limits,
    OnOutput,
    Output,
    Poll,
    SandboxError,
    Status,
)

log = logging.getLogger(__name__)

LABEL = "codeact.managed"
SANDBOX_UID = 1000
MAX_LINE = 32 << 20  # a 5 MiB image is ~7 MiB of base64; anything far larger is hostile
CONTROL_TIMEOUT = 30.0
POLL_INTERVAL = 0.05  # how often a running cell calls its `poll` (Stop within 0.5 s)
CHUNK = 1 << 20
OUTPUT_TYPES = {"stream", "display_data", "execute_result", "error"}


def managed_containers(client: docker.DockerClient, **labels: str) -> list[Any]:
    """Every sandbox container (running or not) carrying these labels."""
    filters = [f"{LABEL}=1", *(f"{k}={v}" for k, v in labels.items())]
    return list(client.containers.list(all=True, filters={"label": filters}))


def docker_client(base_url: str | None = None) -> docker.DockerClient:
    if base_url:
        return docker.DockerClient(base_url=base_url, version="auto", timeout=60)
    return docker.from_env(version="auto", timeout=60)


class _Demux:
    """Splits Docker's multiplexed attach stream into stdout lines and stderr text."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.line = bytearray()
        self.skipping = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        self.buffer += data
        lines: list[bytes] = []
        errors = bytearray()
        while len(self.buffer) >= 8:
            kind, size = struct.unpack(">BxxxL", self.buffer[:8])
            if len(self.buffer) < 8 + size:
                break
            payload = bytes(self.buffer[8 : 8 + size])
            del self.buffer[: 8 + size]
            if kind == 1:
                lines.extend(self._lines(payload))
            else:
                errors += payload
        return lines, bytes(errors)

    def _lines(self, payload: bytes) -> list[bytes]:
        out: list[bytes] = []
        parts = payload.split(b"\n")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if not self.skipping:
                self.line += part
                if len(self.line) > MAX_LINE:
                    log.warning("sandbox sent a line over %d bytes; dropped", MAX_LINE)
                    self.line.clear()
                    self.skipping = True
            if not last:
                if not self.skipping:
                    out.append(bytes(self.line))
                self.line.clear()
                self.skipping = False
        return out


class DockerSandbox:
    """A running sandbox container and its bridge connection."""

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        limits: Limits,
        labels: dict[str, str],
        runtime: str | None = None,
        container_id: str | None = None,
    ) -> None:
        """Start a new sandbox container, or attach to a running one (container_id)."""
        self.client = client
        self.image = image
        self.limits = limits
        self.labels = {LABEL: "1", **labels}
        self.runtime = runtime
        self.id = ""
        # Request ids differ between processes attached to the same container.
        self._ids = itertools.count(secrets.randbelow(1 << 40) + 1)
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self.warm = threading.Event()  # numpy, pandas and matplotlib are imported
        self._dead = threading.Event()
        self._stderr: deque[str] = deque(maxlen=50)
        self._sock: Any = None
        self._interrupt_at: float | None = None
        self.started_at = 0.0
        if container_id:
            self._connect(container_id)
        else:
            self._start()

    # --- lifecycle -------------------------------------------------------------

    def _host_config(self) -> Any:
        limits = self.limits
        tmpfs_opts = f"rw,nosuid,nodev,nr_inodes={limits.inodes}"
        return self.client.api.create_host_config(
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={
                "/tmp": f"{tmpfs_opts},size={limits.tmp_bytes},mode=1777",
                "/workspace": f"{tmpfs_opts},size={limits.workspace_bytes},"
                f"uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755",
            },
            init=True,
            pids_limit=limits.pids,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,
            nano_cpus=int(limits.cpus * 1e9),
            ulimits=[
                Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                Ulimit(name="fsize", soft=limits.fsize_bytes, hard=limits.fsize_bytes),
                Ulimit(name="core", soft=0, hard=0),
            ],
            runtime=self.runtime or None,
            ipc_mode="private",
        )

    def _start(self) -> None:
        api = self.client.api
        self._ready.clear()
        self.warm.clear()
        self._dead.clear()
        started = time.monotonic()
        try:
            created = api.create_container(
                self.image,
                command=["--preload", ",".join(self.limits.preload)],
                stdin_open=True,
                # detach: without it docker-py sets StdinOnce, and the first
                # attach to close would close the bridge's stdin for good.
                detach=True,
                tty=False,
                user=f"{SANDBOX_UID}:{SANDBOX_UID}",
                environment={},
                labels=self.labels,
                network_disabled=True,
                host_config=self._host_config(),
            )
            self.id = created["Id"]
            self._attach()
            api.start(self.id)
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"The sandbox image {self.image} is missing; run scripts/build-sandbox-image.",
                permanent=True,
            ) from None
        except docker.errors.DockerException as exc:
            raise SandboxError(f"Could not start a sandbox: {exc}", permanent=False) from exc
        if not self._ready.wait(self.limits.start_timeout) or self._dead.is_set():
            detail = "; ".join(self._stderr)[-500:]
            self.close()
            raise SandboxError(
                f"The sandbox did not start: {detail or 'timed out'}", permanent=False
            )
        self.started_at = time.monotonic() - started

    def _attach(self) -> None:
        attached = self.client.api.attach_socket(
            self.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        self._sock = getattr(attached, "_sock", attached)
        self._sock.settimeout(None)
        threading.Thread(target=self._read, name=f"sandbox-{self.id[:12]}", daemon=True).start()

    def _connect(self, container_id: str) -> None:
        """Attach to a running sandbox (one made warm by another process)."""
        self.id = container_id
        try:
            self._attach()
        except docker.errors.DockerException as exc:
            raise SandboxError(
                f"Could not reach sandbox {container_id[:12]}: {exc}", permanent=False
            ) from exc
        self._ready.set()
        self.warm.set()
        if not self.ping():
            self.detach()
            raise SandboxError(f"Sandbox {container_id[:12]} does not answer.", permanent=False)

    def detach(self) -> None:
        """Let go of the container without stopping it (another process may attach)."""
        try:
            if self._sock is not None:
                self._sock.close()
        except OSError:
            pass

    def _read(self) -> None:
        demux = _Demux()
        sock = self._sock
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                lines, errors = demux.feed(data)
                if errors:
                    self._stderr.append(errors.decode(errors="replace")[-2000:])
                for line in lines:
                    self._dispatch(line)
        except OSError:
            pass
        finally:
            self._dead.set()
            self._ready.set()
            self.warm.set()
            with self._lock:
                waiting = list(self._pending.values())
            for inbox in waiting:
                inbox.put({"type": "eof"})

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("sandbox %s sent a line that is not JSON", self.id[:12])
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "ready":
            self._ready.set()
            return
        if message.get("type") == "warm":
            self.warm.set()
            return
        req_id = message.get("id")
        with self._lock:
            inbox = self._pending.get(req_id) if isinstance(req_id, int) else None
        if inbox is not None:
            inbox.put(message)

    @property
    def alive(self) -> bool:
        return not self._dead.is_set()

    def close(self) -> None:
        """Remove the container."""
        self.detach()
        if self.id:
            try:
                self.client.api.remove_container(self.id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException:
                log.warning("could not remove sandbox %s", self.id[:12], exc_info=True)

    # --- requests -------------------------------------------------------------

    def _open(self, op: str, **fields: Any) -> tuple[int, queue.Queue[dict[str, Any]]]:
        if self._dead.is_set():
            raise SandboxError("The sandbox has stopped.", permanent=False)
        req_id = next(self._ids)
        inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._pending[req_id] = inbox
        line = json.dumps({"id": req_id, "op": op, **fields}, separators=(",", ":")) + "\n"
        try:
            with self._send_lock:
                self._sock.sendall(line.encode())
        except OSError as exc:
            self._forget(req_id)
            raise SandboxError(f"The sandbox is not reachable: {exc}", permanent=False) from exc
        return req_id, inbox

    def _forget(self, req_id: int) -> None:
        with self._lock:
            self._pending.pop(req_id, None)

    def _control(self, op: str, timeout: float = CONTROL_TIMEOUT, **fields: Any) -> dict[str, Any]:
        req_id, inbox = self._open(op, **fields)
        chunks: list[str] = []
        try:
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxError(
                        f"The sandbox did not answer '{op}' in time.", permanent=False
                    )
                try:
                    message = inbox.get(timeout=remaining)
                except queue.Empty:
                    continue
                if message.get("type") == "eof":
                    raise SandboxError("The sandbox stopped.", permanent=False)
                if message.get("type") == "chunk":
                    chunks.append(str(message.get("data", "")))
                    continue
                if message.get("type") == "done":
                    if chunks:
                        message["chunks"] = chunks
                    return message
        finally:
            self._forget(req_id)

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
        req_id, inbox = self._open("execute", code=code, limits=self.limits.cell_limits())
        cell = _CellGuard(self.limits, on_output)
        try:
            outcome = self._wait_cell(inbox, cell, started + limit, poll)
        finally:
            self._forget(req_id)
        status, done = outcome
        return ExecutionResult(
            status=status,
            execution_count=_int_or_none(done.get("execution_count")),
            duration=time.monotonic() - started,
            outputs=cell.outputs,
            dropped_stream_bytes=cell.dropped_stream_bytes + _int(done.get("dropped_stream_bytes")),
            dropped_displays=cell.dropped_displays + _int(done.get("dropped_displays")),
            dropped_images=cell.dropped_images + _int(done.get("dropped_images")),
            kernel_restarted=bool(done.get("restarted")) or status in ("died",),
            detail=str(done.get("error", ""))[:500],
        )

    def _wait_cell(
        self,
        inbox: queue.Queue[dict[str, Any]],
        cell: _CellGuard,
        deadline: float,
        poll: Poll | None,
    ) -> tuple[Status, dict[str, Any]]:
        timed_out = stopped = restarted = False
        while True:
            now = time.monotonic()
            wake = deadline
            if self._interrupt_at is not None:
                wake = min(wake, self._interrupt_at + self.limits.interrupt_grace)
            if poll is not None:
                wake = min(wake, now + POLL_INTERVAL)
            try:
                message = inbox.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                if poll is not None and not stopped and not timed_out and poll():
                    stopped = True
                    self.interrupt()
                if not restarted and self._grace_over():
                    restarted = True
                    self._force_restart()
                    continue
                if not timed_out and now >= deadline:
                    timed_out = True
                    self.interrupt()
                    continue
                continue
            kind = message.get("type")
            if kind == "output":
                cell.take(message.get("output"))
            elif kind == "done":
                status = _status(str(message.get("status")), timed_out, stopped)
                if restarted:
                    message["restarted"] = True
                return status, message
            elif kind == "eof":
                return "died", {"error": "The sandbox stopped; its kernel state is lost."}

    def _grace_over(self) -> bool:
        at = self._interrupt_at
        return at is not None and time.monotonic() >= at + self.limits.interrupt_grace

    def _force_restart(self) -> None:
        """The kernel ignored the interrupt: kill it and start a fresh one."""
        log.info("sandbox %s: kernel did not yield to the interrupt; restarting", self.id[:12])
        try:
            self._control("restart", timeout=self.limits.start_timeout)
        except SandboxError:
            log.warning("sandbox %s: kernel restart failed", self.id[:12], exc_info=True)

    def interrupt(self) -> None:
        """Interrupt the running cell; it is killed after the grace period."""
        if self._interrupt_at is None:
            self._interrupt_at = time.monotonic()
        with contextlib.suppress(SandboxError):
            self._open("interrupt")

    def restart(self) -> None:
        """A fresh kernel, in a fresh container if the old one is gone."""
        if self._dead.is_set():
            self.close()
            self._pending.clear()
            self._start()
            return
        self._control("restart", timeout=self.limits.start_timeout)

    def ping(self) -> bool:
        try:
            return bool(self._control("ping", timeout=5).get("kernel_alive"))
        except SandboxError:
            return False

    def put_file(self, path: str, data: bytes) -> None:
        """Write a file under /workspace."""
        if len(data) > self.limits.file_bytes:
            raise SandboxError(
                f"The file is larger than {self.limits.file_bytes} bytes.", permanent=True
            )
        offset = 0
        while True:
            piece = data[offset : offset + CHUNK]
            reply = self._control(
                "put_file", path=path, data=base64.b64encode(piece).decode(), append=offset > 0
            )
            _raise_for(reply)
            offset += len(piece)
            if offset >= len(data):
                return

    def get_file(self, path: str) -> bytes:
        """Read a regular file under /workspace."""
        reply = self._control("get_file", path=path, max_bytes=self.limits.file_bytes)
        _raise_for(reply)
        data = bytearray()
        for chunk in reply.get("chunks", []):
            try:
                data += base64.b64decode(chunk, validate=True)
            except (binascii.Error, ValueError):
                raise SandboxError("The sandbox sent a damaged file.", permanent=False) from None
            if len(data) > self.limits.file_bytes:
                raise SandboxError("The file is too large.", permanent=True)
        return bytes(data)

    def list_files(self) -> list[FileInfo]:
        """The regular files under /workspace."""
        reply = self._control("list_files")
        _raise_for(reply)
        files: list[FileInfo] = []
        for item in reply.get("files") or []:
            if not isinstance(item, dict):
                continue
            path, size, mtime = item.get("path"), item.get("size"), item.get("mtime_ns")
            if isinstance(path, str) and isinstance(size, int) and isinstance(mtime, int):
                files.append(FileInfo(path=path, size=size, mtime_ns=mtime))
        return files

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


class _CellGuard:
    """The host's copy of the cell limits: the bridge is not trusted to keep them."""

    def __init__(self, limits: Limits, on_output: OnOutput | None) -> None:
        self.limits = limits
        self.on_output = on_output
        self.outputs: list[Output] = []
        self.stream_bytes = 0
        self.displays = 0
        self.dropped_stream_bytes = 0
        self.dropped_displays = 0
        self.dropped_images = 0

    def take(self, output: Any) -> None:
        if not isinstance(output, dict) or output.get("output_type") not in OUTPUT_TYPES:
            return
        kind = output["output_type"]
        if kind == "stream":
            text = str(output.get("text", ""))
            size = len(text.encode())
            room = self.limits.stream_bytes - self.stream_bytes
            if room <= 0:
                self.dropped_stream_bytes += size
                return
            if size > room:
                text = text.encode()[:room].decode(errors="ignore")
                self.dropped_stream_bytes += size - len(text.encode())
            self.stream_bytes += len(text.encode())
            output = {
                "output_type": "stream",
                "name": _stream_name(output.get("name")),
                "text": text,
            }
        elif kind in ("display_data", "execute_result"):
            if self.displays >= self.limits.display_items:
                self.dropped_displays += 1
                return
            self.displays += 1
            output = self._rich(output)
        else:
            output = {
                "output_type": "error",
                "ename": str(output.get("ename", ""))[:200],
                "evalue": str(output.get("evalue", ""))[:10_000],
                "traceback": [str(t)[:10_000] for t in (output.get("traceback") or [])][:200],
            }
        self.outputs.append(output)
        if self.on_output is not None:
            self.on_output(output)

    def _rich(self, output: dict[str, Any]) -> Output:
        raw = output.get("data")
        data = {str(k): v for k, v in raw.items()} if isinstance(raw, dict) else {}
        for mime in IMAGE_MIMES:
            if mime in data and len(str(data[mime])) > self.limits.image_bytes * 4 // 3 + 4:
                del data[mime]
                self.dropped_images += 1
        kept = next((mime for mime in IMAGE_MIMES if mime in data), None)
        data = {k: v for k, v in data.items() if k == kept or not k.startswith("image/")}
        clean: Output = {
            "output_type": output["output_type"],
            "data": data,
            "metadata": output.get("metadata") if isinstance(output.get("metadata"), dict) else {},
        }
        if output["output_type"] == "execute_result":
            clean["execution_count"] = _int_or_none(output.get("execution_count"))
        return clean


def _stream_name(name: Any) -> str:
    return "stderr" if name == "stderr" else "stdout"


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


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _raise_for(reply: dict[str, Any]) -> None:
    status = reply.get("status")
    if status == "ok":
        return
    message = str(reply.get("error") or "the sandbox refused the request")[:300]
    raise SandboxError(message, permanent=status == "refused")
