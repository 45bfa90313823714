"""The host's end of the bridge protocol: JSON lines over a Docker attach stream.

Nothing the bridge sends is trusted (kernel code runs as the same uid), so
every line is bounded here before it reaches a caller: its length, its type
for the request it names (an execute takes outputs, a get_file takes chunks,
anything takes one done), and how much may wait unread per request. A reply
for a request that is not waiting (finished, never asked, or fire-and-forget)
is dropped. A bad line costs only itself; later requests are not affected.

Lines are signed by the bridge with a per-container key ("<mac> <seq> <json>",
HMAC-SHA256, sequence numbers rising): kernel code that reaches the bridge's
pipes (possible under gVisor) can read or swallow lines, but not forge or
replay one.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import json
import logging
import math
import queue
import secrets
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# A cell's replies that may wait unread in the host's memory at one time; the
# consumer applies the cell caps as it reads, so this bounds only a backlog.
BACKLOG_BYTES = 16 << 20
SEND_TIMEOUT = 10.0  # a bridge that takes no input for this long is not coming back
ACCEPTS = {"execute": {"output"}, "get_file": {"chunk"}}
Message = dict[str, Any]


class _Demux:
    """Splits Docker's multiplexed attach stream into stdout lines and stderr text."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.buffer = bytearray()
        self.line = bytearray()
        self.skipping = False
        self.too_long = 0

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
                if len(self.line) > self.max_line:
                    self.too_long += 1
                    self.line.clear()
                    self.skipping = True
            if not last:
                if not self.skipping:
                    out.append(bytes(self.line))
                self.line.clear()
                self.skipping = False
        return out


class Request:
    """One request waiting for its replies, with what it may still accept."""

    def __init__(self, req_id: int, op: str) -> None:
        self.id = req_id
        self.op = op
        self.accepts = ACCEPTS.get(op, set())
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.waiting_bytes = 0  # queued and not yet read
        self.overflow: dict[str, int] = {}  # what was dropped past the backlog, by kind
        self._lock = threading.Lock()

    def offer(self, message: Message, size: int) -> None:
        with self._lock:
            if self.waiting_bytes + size > BACKLOG_BYTES and message.get("type") != "done":
                output = message.get("output")
                kind = output.get("output_type") if isinstance(output, dict) else None
                key = "stream_bytes" if kind == "stream" else "display_bytes"
                self.overflow[key] = self.overflow.get(key, 0) + size
                return
            self.waiting_bytes += size
        self.inbox.put({**message, "_size": size})

    def get(self, timeout: float) -> Message:
        """The next reply; raises queue.Empty after timeout seconds (a blocking wait)."""
        message = self.inbox.get(timeout=timeout)
        with self._lock:
            self.waiting_bytes -= int(message.pop("_size", 0))
        return message


class Connection:
    """A socket to one bridge: a reader thread and the requests waiting on it."""

    def __init__(self, sock: Any, max_line: int, name: str, key: str) -> None:
        self.sock = sock
        self.key = key.encode()
        self.last_seq = 0
        self.name = name
        self.max_line = max_line
        # Request ids differ between processes attached to the same container.
        self._ids = itertools.count(secrets.randbelow(1 << 40) + 1)
        self._pending: dict[int, Request] = {}
        # Fire-and-forget requests (interrupt, restart): their done is dropped quietly.
        self._quiet: deque[int] = deque(maxlen=64)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.ready = threading.Event()
        self.warm = threading.Event()
        self.closed = threading.Event()
        self.closed_why = ""  # what ended the stream first (set before `closed`)
        self.stderr: deque[str] = deque(maxlen=50)
        self.rejected = 0  # lines that are not the bridge's (unsigned, replayed, too long)
        self.unasked = 0  # the bridge's replies that no request here waits for
        # A send that fails half-way leaves the stream out of step: no retry.
        self.sock.settimeout(SEND_TIMEOUT)
        self._thread = threading.Thread(target=self._read, name=f"sandbox-{name}", daemon=True)
        self._thread.start()

    # --- receiving -------------------------------------------------------------

    def _read(self) -> None:
        demux = _Demux(self.max_line)
        try:
            while True:
                try:
                    data = self.sock.recv(1 << 16)
                except TimeoutError:
                    continue  # the timeout is for sends; a quiet bridge is fine
                if not data:
                    self._closing("the stream ended")
                    break
                if self.closed.is_set():
                    break
                lines, errors = demux.feed(data)
                if errors:
                    self.stderr.append(errors.decode(errors="replace")[-2000:])
                for line in lines:
                    self._dispatch(line)
                if demux.too_long:
                    self._reject(f"{demux.too_long} line(s) over {self.max_line} bytes")
                    demux.too_long = 0
        except OSError as exc:
            self._closing(f"reading failed: {exc.strerror or exc}")
        finally:
            self.close()

    def _closing(self, why: str) -> None:
        if not self.closed_why:
            self.closed_why = why

    def _verify(self, line: bytes) -> bytes | None:
        """The JSON of a line signed with this container's key, newer than the last one."""
        mac, _, signed = line.partition(b" ")
        seq, _, body = signed.partition(b" ")
        expected = hmac.new(self.key, signed, "sha256").hexdigest()[:32].encode()
        if not hmac.compare_digest(mac, expected) or not seq.isdigit() or len(seq) > 19:
            self._reject("an unsigned line")
            return None
        if int(seq) <= self.last_seq:
            self._reject("a replayed line")
            return None
        self.last_seq = int(seq)
        return body

    def _dispatch(self, line: bytes) -> None:
        body = self._verify(line)
        if body is None:
            return
        try:
            message = json.loads(body)
        except ValueError:
            self._reject("a line that is not JSON")
            return
        if not isinstance(message, dict):
            self._reject("a line that is not an object")
            return
        kind, req_id = message.get("type"), message.get("id")
        if kind == "ready" and req_id is None:
            self.ready.set()
            return
        if kind == "warm" and req_id is None:
            self.warm.set()
            return
        with self._lock:
            request = self._pending.get(req_id) if type(req_id) is int else None
            if request is not None and kind == "done":
                del self._pending[request.id]  # nothing is accepted for it after its done
            quiet = request is None and kind == "done" and req_id in self._quiet
        if quiet:
            return
        if request is None or (kind != "done" and kind not in request.accepts):
            # Signed, so the bridge sent it: a reply to another process attached
            # to the same container, or one that came after its request ended.
            self.unasked += 1
            log.debug("sandbox %s: dropped a %.20r reply nobody here asked for", self.name, kind)
            return
        request.offer(message, len(line))

    def _reject(self, what: str) -> None:
        """Count what was dropped; log the 1st, 10th, 100th... so a flood cannot fill the log."""
        self.rejected += 1
        if math.log10(self.rejected).is_integer():
            log.warning("sandbox %s sent %s; dropped (%d so far)", self.name, what, self.rejected)

    # --- sending ----------------------------------------------------------------

    def open(self, op: str, register: bool = True, **fields: Any) -> Request:
        """Send a request. Unregistered (fire-and-forget) requests get no replies."""
        if self.closed.is_set():
            raise ConnectionError(f"the connection is closed ({self.closed_why})")
        request = Request(next(self._ids), op)
        with self._lock:
            if register:
                self._pending[request.id] = request
            else:
                self._quiet.append(request.id)
        line = json.dumps({"id": request.id, "op": op, **fields}, separators=(",", ":")) + "\n"
        try:
            with self._send_lock:
                self.sock.sendall(line.encode())
        except OSError as exc:
            self.forget(request)
            self._closing(f"sending failed: {exc.strerror or exc}")
            self.close()
            raise ConnectionError(f"sending '{op}' failed ({self.closed_why})") from exc
        if self.closed.is_set():  # closed while sending: close() may have missed it
            request.inbox.put({"type": "eof"})
        return request

    def send_line(self, message: Message) -> None:
        """Send a line that is not a request (the key, first of all)."""
        line = json.dumps(message, separators=(",", ":")) + "\n"
        try:
            with self._send_lock:
                self.sock.sendall(line.encode())
        except OSError as exc:
            self.close()
            raise ConnectionError(str(exc) or type(exc).__name__) from exc

    def forget(self, request: Request) -> None:
        with self._lock:
            self._pending.pop(request.id, None)

    def close(self) -> None:
        """Stop taking replies; everyone waiting gets an eof."""
        if self.closed.is_set():
            return
        self._closing("closed here")
        self.closed.set()
        self.ready.set()
        self.warm.set()
        # shutdown, not only close: docker-py's response object still holds the
        # socket, so close() alone neither ends the stream nor wakes the reader.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            waiting, self._pending = list(self._pending.values()), {}
        for request in waiting:
            request.inbox.put({"type": "eof"})


def wait_until(request: Request, deadline: float, now: Callable[[], float]) -> Message | None:
    """The next reply before deadline, or None; blocks without spinning."""
    remaining = deadline - now()
    if remaining <= 0:
        return None
    try:
        return request.get(timeout=remaining)
    except queue.Empty:
        return None
