"""The sandbox bridge: owns one IPython kernel and speaks JSON lines.

It runs as PID 2 of the sandbox container (under tini), reads requests from
stdin and writes replies to stdout; the host reaches both through the Docker
attach stream, so the container needs no network at all. The kernel runs
behind jupyter_client's KernelManager over IPC sockets in the private /tmp.

Requests:  {"id": N, "op": "execute", "code": ..., "limits": {...}}
           {"id": N, "op": "interrupt" | "restart" | "ping" | "list_files"}
           {"id": N, "op": "get_file", "path": ..., "max_bytes": M}
           {"id": N, "op": "put_file", "path": ..., "data": base64, "append": bool}
           {"id": N, "op": "delete_file", "path": ...}
Replies:   {"id": N, "type": "output", "output": {nbformat output}}
           {"id": N, "type": "chunk", "data": base64}   (get_file)
           {"id": N, "type": "done", ...}   (the last message for a request)
           {"type": "ready"} once, when the kernel can take code, and
           {"type": "warm"} once the common libraries are imported.

Limits a Kubernetes pod spec cannot express are the bridge's to apply, when
the host asks with `--rlimits nofile=N,fsize=N,core=0,nproc=N` (set with
setrlimit before anything else starts, for the bridge and every process after
it) and `--inodes N` (a watchdog stops a cell once /tmp or /workspace holds
more than N files: an emptyDir tmpfs has no inode cap). Docker sets ulimits,
the pids cap and nr_inodes itself, so the Docker profile passes neither.

The bridge is the container's PID 1 (no tini) and makes itself non-dumpable:
its /proc entries (fd, mem, environ) then belong to root, so the kernel's
code, which runs as the same uid, can neither read requests from the
bridge's stdin nor write forged replies to its stdout, nor signal it. PID 1's
other duty, reaping orphans, is done by a thread. Everything written here is
still checked on the host, which treats what it receives as untrusted.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import ctypes
import hmac
import itertools
import json
import os
import queue
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from typing import Any

from jupyter_client import KernelManager
from outputs import CellCaps

WORKSPACE = "/workspace"
RUNTIME = "/tmp/jupyter"
# What a new kernel imports before it is offered (the host chooses, with
# --preload): the first real cell then finds the libraries loaded and inline
# plotting on. The names are the ones models expect.
PRELOADS = {
    "numpy": "import numpy as np",
    "pandas": "import pandas as pd",
    "matplotlib": "import matplotlib\nimport matplotlib.pyplot as plt\n"
    "get_ipython().run_line_magic('matplotlib', 'inline')",
    "scipy": "import scipy",
    "seaborn": "import seaborn as sns",
    "sklearn": "import sklearn",
    "sympy": "import sympy",
}


def preload_from(argv: list[str]) -> list[str]:
    names: list[str] = []
    if "--preload" in argv[:-1]:
        raw = argv[argv.index("--preload") + 1]
        names = [n for n in raw.split(",") if n in PRELOADS]
    return names


RLIMITS = {
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
    "nproc": resource.RLIMIT_NPROC,
}
INODE_MOUNTS = ("/tmp", WORKSPACE)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1] if name in argv[:-1] else ""


def apply_rlimits(spec: str) -> dict[str, int]:
    """Set `name=value,...` (RLIMITS' names) as soft and hard limits; returns what was set.

    A limit can only go down: a value above the current hard limit is taken as
    that limit. A malformed item stops the bridge (the host asked for a cap it
    would not get).
    """
    applied: dict[str, int] = {}
    for item in filter(None, spec.split(",")):
        name, _, raw = item.partition("=")
        if name not in RLIMITS or not raw.isdigit():
            raise SystemExit(f"bridge: bad --rlimits item {item!r}")
        which = RLIMITS[name]
        _, hard = resource.getrlimit(which)
        value = int(raw) if hard == resource.RLIM_INFINITY else min(int(raw), hard)
        resource.setrlimit(which, (value, value))
        applied[name] = value
    return applied


def inodes_used(path: str) -> int | None:
    """Files (inodes) in use on the file system at path; None when it does not say
    (gVisor's tmpfs reports no inode counts)."""
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return max(0, info.f_files - info.f_ffree) if info.f_files else None


def entries_over(path: str, cap: int) -> bool:
    """Whether the tree at path holds more than cap entries: counted from directory
    listings alone (no stat), stopping at cap + 1. Directories the code made
    unreadable are not counted: under gVisor, where this is used, its memory
    limit still bounds what files cost."""
    count, stack = 0, [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    count += 1
                    if count > cap:
                        return True
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return False


CHUNK = 1 << 20
MAX_LISTED = 2000
MAX_LISTED_BYTES = 1 << 20  # of paths in one list_files reply
LINE_BYTES = 12 << 20  # the host's default line cap; each execute request says its own
STDERR_BYTES = 256 << 10  # what this process may write to stderr in its whole life

_out_lock = threading.Lock()
_stdout = os.fdopen(os.dup(1), "wb")
# Every line is signed: "<mac> <seq> <json>". Where the kernel's code can reach
# this process's pipes anyway (gVisor shows a non-dumpable process's fds and
# environment, though not its memory), it can still not forge a reply: the key
# is the first line the host sends, read before the kernel exists, and lives
# only in this process's memory.
_KEY = b""
_seq = itertools.count(1)


def read_key() -> None:
    global _KEY
    try:
        _KEY = str(json.loads(sys.stdin.buffer.readline())["key"]).encode()
    except (ValueError, KeyError, TypeError):
        _KEY = b""  # nothing the host accepts will be sent


# Nothing else may write to the protocol channel: not this process's stray
# prints, not the kernel, not the kernel's children.
_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 1)


# Request ids seen lately, with the done of those finished: a host whose stream was
# lost (a Kubernetes API server restart) sends its waiting requests again on the new
# one; a repeat is not run twice, and a finished one gets its done again.
SEEN_IDS = 1024
SEEN_DONE_BYTES = 64 << 10
_seen: collections.OrderedDict[int, dict[str, Any] | None] = collections.OrderedDict()


def first_time(req_id: Any) -> bool:
    """False for a request id seen before (its done, if any, is sent again)."""
    if type(req_id) is not int:
        return True
    with _out_lock:
        if req_id not in _seen:
            _seen[req_id] = None
            while len(_seen) > SEEN_IDS:
                _seen.popitem(last=False)
            return True
        done = _seen[req_id]
    if done is not None:
        send(done)
    return False


def send(message: dict[str, Any], limit: int = LINE_BYTES) -> bool:
    """Write one line; a line the host would refuse is not sent (returns False)."""
    line = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(line) > limit:
        return False
    with _out_lock:
        body = b"%d %s" % (next(_seq), line)
        mac = hmac.new(_KEY, body, "sha256").hexdigest()[:32].encode()
        _stdout.write(mac + b" " + body + b"\n")
        _stdout.flush()
        req_id = message.get("id")
        if message.get("type") == "done" and type(req_id) is int and req_id in _seen:
            if len(line) > SEEN_DONE_BYTES:
                lost = "the reply was lost with the connection; ask again"
                message = {"id": req_id, "type": "done", "status": "error", "error": lost}
            _seen[req_id] = message
    return True


class _CappedStderr:
    """Stderr reaches the host over the attach stream: keep it small for good."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream, self.left = stream, limit

    def write(self, text: str) -> int:
        if self.left > 0:
            piece = text[: self.left]
            self.left -= len(piece)
            with contextlib.suppress(Exception):
                self.stream.write(piece)
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        pass


def hide_from_the_kernel() -> None:
    """Non-dumpable: same-uid processes may not open /proc/<this>/fd, mem or environ."""
    PR_SET_DUMPABLE = 4
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def reap_orphans(kernel: Kernel) -> None:
    """PID 1's duty: collect exited orphans, but never the kernel (its Popen waits for it)."""
    while True:
        time.sleep(0.5)
        keep = kernel.pid
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in (keep, os.getpid()):
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] == b"Z" and int(fields[1]) == os.getpid():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(name), os.WNOHANG)


def kernel_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "MPLCONFIGDIR", "MATPLOTLIBRC", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR",
            "JUPYTER_PLATFORM_DIRS", "PYTHONDONTWRITEBYTECODE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            # web access (the host sets them only for a sandbox on the egress network)
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
            )  # fmt: skip
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(LANG="C.UTF-8", TERM="dumb", PYDEVD_DISABLE_FILE_VALIDATION="1")
    return env


class Kernel:
    def __init__(self, preload: list[str]) -> None:
        self.preload = preload
        self.km: KernelManager | None = None
        self.kc: Any = None
        self.lock = threading.RLock()
        self.generation = 0
        self.interrupted = False

    def start(self) -> None:
        with self.lock:
            for path in (RUNTIME, os.environ.get("HOME", "/tmp/home")):
                os.makedirs(path, exist_ok=True)
            km = KernelManager(transport="ipc", ip=os.path.join(RUNTIME, "kernel"))
            km.start_kernel(
                env=kernel_env(), cwd=WORKSPACE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                # no input history database: nothing to keep, less to start
                extra_arguments=["--HistoryManager.enabled=False"],
            )  # fmt: skip
            kc = km.blocking_client()
            kc.start_channels()
            self._wait_ready(km, kc, timeout=60)
            self.km, self.kc = km, kc

    @staticmethod
    def _wait_ready(km: KernelManager, kc: Any, timeout: float) -> None:
        """Like kc.wait_for_ready, with 50 ms polls instead of 1 s ones.

        Ready means a kernel_info reply on shell and a message on IOPub (so
        the IOPub subscription is live and no output of the first cell is lost).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = kc.kernel_info()
            for _ in range(10):
                try:
                    reply = kc.get_shell_msg(timeout=0.05)
                except queue.Empty:
                    continue
                if reply["parent_header"].get("msg_id") != msg_id:
                    continue
                try:
                    kc.get_iopub_msg(timeout=0.2)
                except queue.Empty:
                    break  # IOPub not connected yet: ask again
                return
            if not km.is_alive():
                raise RuntimeError("the kernel died while starting")
        raise RuntimeError("the kernel did not start in time")

    def warm_up(self) -> None:
        code = "\n".join(PRELOADS[name] for name in self.preload)
        if not code:
            return
        msg_id = self.kc.execute(code, silent=True, store_history=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reply = self.kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                return

    @property
    def pid(self) -> int | None:
        km = self.km
        process = getattr(getattr(km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def interrupt(self) -> None:
        self.interrupted = True
        if self.km is not None:
            self.km.interrupt_kernel()

    def restart(self) -> None:
        with self.lock:
            # First, so that a cell waiting on the old kernel ends as interrupted.
            self.generation += 1
            if self.kc is not None:
                self.kc.stop_channels()
            if self.km is not None:
                with contextlib.suppress(Exception):
                    self.km.shutdown_kernel(now=True)
            kill_strays(keep={os.getpid()})
            self.km = None
            self.start()
            self.warm_up()


def kill_strays(keep: set[int]) -> int:
    """SIGKILL every process of the sandbox but PID 1, the bridge and `keep`.

    Processes started by a cell do not outlive it: a daemon that keeps
    printing would otherwise write into the next cell's output.
    """
    keep = keep | {1, os.getpid()}
    killed = 0
    for _ in range(50):
        found = 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in keep:
                continue
            try:
                os.kill(int(name), signal.SIGKILL)
                found += 1
            except (ProcessLookupError, PermissionError):
                pass
        if not found:
            break
        killed += found
        time.sleep(0.01)
    # Reap the bridge's own children (a killed kernel) so they do not linger.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    return killed


class Cell:
    """One execution: forwards the kernel's outputs within the cell's caps."""

    def __init__(self, req_id: Any, limits: dict[str, Any]) -> None:
        self.req_id = req_id
        self.caps = CellCaps.from_limits(limits)
        line = limits.get("line_bytes")
        self.line_bytes = line if isinstance(line, int) and line > 0 else LINE_BYTES
        self.execution_count: int | None = None
        self.over_inodes = ""  # set by the inode watchdog when it stopped this cell

    def emit(self, output: dict[str, Any]) -> None:
        kept = self.caps.take(output)
        if kept is None:
            return
        if not send({"id": self.req_id, "type": "output", "output": kept}, self.line_bytes):
            # Only text full of escapes gets here: its JSON is far larger than its bytes.
            key = "stream_bytes" if kept["output_type"] == "stream" else "display_bytes"
            self.caps.dropped[key] += len(json.dumps(kept, ensure_ascii=False).encode())

    def done_fields(self) -> dict[str, Any]:
        dropped = self.caps.dropped
        return {
            "execution_count": self.execution_count,
            "dropped_stream_bytes": dropped["stream_bytes"],
            "dropped_displays": dropped["displays"],
            "dropped_images": dropped["images"],
            "dropped_display_bytes": dropped["display_bytes"],
        }


class Bridge:
    def __init__(self, preload: list[str]) -> None:
        self.kernel = Kernel(preload)
        self.jobs: queue.Queue[dict[str, Any]] = queue.Queue()
        self.files: queue.Queue[dict[str, Any]] = queue.Queue()
        self.restarting = threading.Event()
        self.current: Cell | None = None  # the cell running now

    def watch_inodes(self, cap: int, interval: float = 0.1) -> None:
        """Stop a cell that leaves more than `cap` files on /tmp or /workspace.

        Where the tmpfs itself caps inodes (Docker's nr_inodes) the cell gets
        ENOSPC from the kernel; here it is interrupted a moment after crossing
        the cap and ends with the same OSError. Its files stay (they are the
        user's); the next cell may delete them. Where the file system reports no
        inode counts the tree is counted instead, once a second.
        """
        counted_at = dict.fromkeys(INODE_MOUNTS, 0.0)
        while True:
            time.sleep(interval)
            cell = self.current
            if cell is None or cell.over_inodes:
                continue
            for mount in INODE_MOUNTS:
                used = inodes_used(mount)
                if used is None:
                    if time.monotonic() - counted_at[mount] < 1.0:
                        continue
                    counted_at[mount] = time.monotonic()
                    over = entries_over(mount, cap)
                else:
                    over = used > cap
                if over:
                    cell.over_inodes = (
                        f"[Errno 28] No space left on device: more than {cap} files in {mount}"
                    )
                    self.kernel.interrupt()
                    break

    # --- execution -------------------------------------------------------------

    def run_jobs(self) -> None:
        # Warm up before the first cell: it waits in the queue behind this.
        self.kernel.warm_up()
        send({"type": "warm"})
        while True:
            request = self.jobs.get()
            try:
                self.execute(request)
            except Exception as exc:  # never let one cell take the bridge down
                send({"id": request.get("id"), "type": "done", "status": "error",
                      "error": f"bridge: {type(exc).__name__}: {exc}"})  # fmt: skip

    def execute(self, request: dict[str, Any]) -> None:
        kernel = self.kernel
        limits = request.get("limits")
        cell = Cell(request.get("id"), limits if isinstance(limits, dict) else {})
        generation = kernel.generation
        kernel.interrupted = False
        started = time.monotonic()
        self.current = cell
        try:
            status = self._run_cell(kernel, cell, str(request.get("code", "")), generation)
        finally:
            self.current = None
        if cell.over_inodes and status != "died":
            status = "error"
            cell.emit({"output_type": "error", "ename": "OSError", "evalue": cell.over_inodes,
                       "traceback": [f"OSError: {cell.over_inodes}"]})  # fmt: skip
        if status != "died" and kernel.generation == generation:
            kill_strays(keep={kernel.pid or 0})
        # A dead kernel is restarted after the reply, not before: the host learns
        # at once, and the next request waits in the queue behind the restart.
        send({
            "id": cell.req_id, "type": "done", "status": status,
            "duration": round(time.monotonic() - started, 6),
            "restarted": status == "died" or kernel.generation != generation,
            **cell.done_fields(),
        })  # fmt: skip
        if status == "died":
            kernel.restart()

    def _run_cell(self, kernel: Kernel, cell: Cell, code: str, generation: int) -> str:
        kc = kernel.kc
        msg_id = kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
        while True:
            if kernel.generation != generation:
                return "interrupted"
            try:
                msg = kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                if not kernel.alive() and kernel.generation == generation:
                    return "died"
                continue
            except Exception:
                if kernel.generation != generation:
                    return "interrupted"
                raise
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                cell.emit({"output_type": "stream", **content})
            elif kind in ("display_data", "update_display_data"):
                cell.emit({**content, "output_type": "display_data"})
            elif kind == "execute_result":
                cell.emit({**content, "output_type": "execute_result"})
            elif kind == "error":
                cell.emit({**content, "output_type": "error"})
            elif kind == "execute_input":
                cell.execution_count = content.get("execution_count")
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        return self._reply_status(kernel, kc, msg_id)

    def _reply_status(self, kernel: Kernel, kc: Any, msg_id: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                reply = kc.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                status = reply["content"].get("status", "error")
                if kernel.interrupted and status != "ok":
                    return "interrupted"
                return "ok" if status == "ok" else "error"
        return "error"

    # --- files -----------------------------------------------------------------

    def run_files(self) -> None:
        while True:
            request = self.files.get()
            try:
                result = getattr(self, "file_" + request["op"])(request)
                send({"id": request.get("id"), "type": "done", "status": "ok", **result})
            except FileRefused as exc:
                send(
                    {
                        "id": request.get("id"),
                        "type": "done",
                        "status": "refused",
                        "error": str(exc),
                    }
                )
            except Exception as exc:
                send({"id": request.get("id"), "type": "done", "status": "error",
                      "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip

    def file_list_files(self, request: dict[str, Any]) -> dict[str, Any]:
        files: list[dict[str, Any]] = []
        truncated = False
        listed_bytes = 0
        for root, dirs, names in os.walk(WORKSPACE, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                    continue
                relative = os.path.relpath(path, WORKSPACE)
                listed_bytes += len(relative.encode(errors="surrogateescape")) + 64
                if len(files) >= MAX_LISTED or listed_bytes > MAX_LISTED_BYTES:
                    truncated = True
                    break
                files.append({"path": relative, "size": info.st_size,
                              "mtime_ns": info.st_mtime_ns})  # fmt: skip
            if truncated:
                break
        return {"files": files, "truncated": truncated}

    def file_get_file(self, request: dict[str, Any]) -> dict[str, Any]:
        limit = int(request.get("max_bytes", 50 << 20))
        fd = open_confined(str(request.get("path", "")), os.O_RDONLY)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileRefused("not a regular file")
            if info.st_nlink != 1:
                raise FileRefused("a file with several hard links is refused")
            if info.st_size > limit:
                raise FileRefused(f"the file is larger than {limit} bytes")
            total = 0
            while True:
                # At most one byte past the limit: a file that grew since it was
                # listed is refused without reading the rest of it.
                block = os.read(fd, min(CHUNK, limit + 1 - total))
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise FileRefused(f"the file is larger than {limit} bytes")
                data = base64.b64encode(block).decode()
                send({"id": request.get("id"), "type": "chunk", "data": data})
            return {"size": total}
        finally:
            os.close(fd)

    def file_put_file(self, request: dict[str, Any]) -> dict[str, Any]:
        path = str(request.get("path", ""))
        data = base64.b64decode(str(request.get("data", "")), validate=True)
        parent = os.path.dirname(path)
        if parent:
            make_dirs(parent)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request.get("append") else os.O_TRUNC)
        fd = open_confined(path, flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileRefused("not a regular file")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return {"size": len(data)}

    def file_delete_file(self, request: dict[str, Any]) -> dict[str, Any]:
        """Remove a regular file (or a link itself, never its target); a missing one is fine."""
        parts = _components(str(request.get("path", "")))
        dir_fd = _open_dir(parts[:-1])
        try:
            try:
                info = os.lstat(parts[-1], dir_fd=dir_fd)
            except FileNotFoundError:
                return {"deleted": False}
            if stat.S_ISDIR(info.st_mode):
                raise FileRefused("a directory is not deleted")
            os.unlink(parts[-1], dir_fd=dir_fd)
            return {"deleted": True}
        except OSError as exc:
            raise FileRefused(f"cannot delete: {exc.strerror}") from None
        finally:
            os.close(dir_fd)

    # --- control ---------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> None:
        op = request.get("op")
        req_id = request.get("id")
        if op == "execute":
            self.jobs.put(request)
        elif op in ("list_files", "get_file", "put_file", "delete_file"):
            self.files.put(request)
        elif op == "interrupt":
            self.kernel.interrupt()
            send({"id": req_id, "type": "done", "status": "ok"})
        elif op == "restart":
            self.kernel.restart()
            send({"id": req_id, "type": "done", "status": "ok"})
        elif op == "ping":
            send(
                {"id": req_id, "type": "done", "status": "ok", "kernel_alive": self.kernel.alive()}
            )
        else:
            send({"id": req_id, "type": "done", "status": "error", "error": f"unknown op {op!r}"})

    def serve(self) -> None:
        self.kernel.start()
        threading.Thread(target=self.run_jobs, name="jobs", daemon=True).start()
        threading.Thread(target=self.run_files, name="files", daemon=True).start()
        send({"type": "ready", "pid": os.getpid()})
        for raw in sys.stdin.buffer:
            try:
                request = json.loads(raw)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                send({"type": "protocol_error", "error": str(exc)})
                continue
            if not first_time(request.get("id")):
                continue
            try:
                self.handle(request)
            except Exception as exc:
                send({"id": request.get("id"), "type": "done", "status": "error",
                      "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip


class FileRefused(Exception):
    pass


def _components(path: str) -> list[str]:
    if not path or path.startswith("/") or "\x00" in path:
        raise FileRefused("a path must be relative to the workspace")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise FileRefused("a path must stay inside the workspace")
    if any(len(p.encode()) > 255 for p in parts):
        raise FileRefused("a path component is too long")
    return parts


def _step(fd: int, name: str, flags: int) -> int:
    """Open name inside the directory fd, refusing links however the kernel treats O_NOFOLLOW.

    Some kernels (gVisor's, for one) follow a symlink to a directory despite
    O_NOFOLLOW|O_DIRECTORY, so the name is also checked with lstat, and the
    opened object must be the one lstat saw, on the workspace's file system.
    """
    before = os.lstat(name, dir_fd=fd)
    if stat.S_ISLNK(before.st_mode):
        raise FileRefused(f"{name} is a symbolic link")
    opened = os.open(name, flags | os.O_NOFOLLOW, 0o644, dir_fd=fd)
    after = os.fstat(opened)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or (
        after.st_dev != os.stat(WORKSPACE).st_dev
    ):
        os.close(opened)
        raise FileRefused(f"{name} changed while it was opened")
    return opened


def _open_dir(parts: list[str]) -> int:
    """Walk to a directory without following a symlink on the way."""
    fd = os.open(WORKSPACE, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            nxt = _step(fd, part, os.O_RDONLY | os.O_DIRECTORY)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        raise FileRefused("the path goes through something that is not a directory") from None
    except FileRefused:
        os.close(fd)
        raise
    return fd


def open_confined(path: str, flags: int) -> int:
    parts = _components(path)
    dir_fd = _open_dir(parts[:-1])
    try:
        if flags & os.O_CREAT:
            try:
                os.lstat(parts[-1], dir_fd=dir_fd)
            except FileNotFoundError:
                fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_EXCL, 0o644, dir_fd=dir_fd)
                os.close(fd)
        return _step(dir_fd, parts[-1], (flags & ~os.O_CREAT) | os.O_NONBLOCK)
    except OSError as exc:
        raise FileRefused(f"cannot open {path}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)


def make_dirs(path: str) -> None:
    fd = os.open(WORKSPACE, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in _components(path):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nxt = _step(fd, part, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                raise FileRefused(f"{part} is not a directory") from None
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # PID 1 has no default action
    hide_from_the_kernel()
    apply_rlimits(option(sys.argv, "--rlimits"))
    read_key()
    sys.stderr = _CappedStderr(sys.stderr, STDERR_BYTES)
    bridge = Bridge(preload_from(sys.argv))
    threading.Thread(target=reap_orphans, args=(bridge.kernel,), daemon=True).start()
    if option(sys.argv, "--inodes").isdigit():
        cap = int(option(sys.argv, "--inodes"))
        threading.Thread(target=bridge.watch_inodes, args=(cap,), daemon=True).start()
    bridge.serve()
