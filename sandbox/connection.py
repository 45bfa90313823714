"""The host's end of the bridge protocol: JSON lines over an attach stream.

The stream is Docker's multiplexed attach socket (the default framing,
`_Demux`) or, for a pod, the Kubernetes API server's attach websocket
(`ChannelFraming`, over `AttachStream` in sandbox/kubernetes_backend.py).
Either way it carries the bridge's stdin, stdout and stderr; only the framing
differs. A connection given a `reattach` function survives the loss of its
stream (an API server restart, a kubelet stream timeout): it opens a new one,
keeps every waiting request and the signature state, and sends the waiting
requests again (one written into the dying stream may never have arrived; the
bridge runs each request id once and answers a repeat of a finished one with
its done).

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
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

# A cell's replies that may wait unread in the host's memory at one time; the
# consumer applies the cell caps as it reads, so this bounds only a backlog.
BACKLOG_BYTES = 16 << 20
SEND_TIMEOUT = 10.0  # a bridge that takes no input for this long is not coming back
# How long a lost stream may take to come back (reattach only) before the sandbox
# counts as gone; sends wait for it meanwhile.
REATTACH_WINDOW = 30.0
ACCEPTS = {"execute": {"output"}, "get_file": {"chunk"}}
Message = dict[str, Any]


class Stream(Protocol):
    """What a connection reads and writes: a socket, or an adapter with its calls."""

    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> None: ...
    def settimeout(self, timeout: float | None, /) -> None: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...


class Framing(Protocol):
    """Turns what a stream delivers into the bridge's stdout lines and stderr bytes."""

    too_long: int  # lines dropped for their length since last reset

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]: ...


class _Lines:
    """Splits stdout bytes into lines, dropping (and counting) lines over max_line."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.line = bytearray()
        self.skipping = False
        self.too_long = 0

    def split(self, payload: bytes) -> list[bytes]:
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


class _Demux(_Lines):
    """Splits Docker's multiplexed attach stream into stdout lines and stderr text."""

    def __init__(self, max_line: int) -> None:
        super().__init__(max_line)
        self.buffer = bytearray()

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
                lines.extend(self.split(payload))
            else:
                errors += payload
        return lines, bytes(errors)


class ChannelFraming(_Lines):
    """The Kubernetes stream protocol (v4/v5.channel.k8s.io): each websocket message
    is one channel byte and its data; 1 is stdout, 2 stderr, 3 the API server's
    status (why the stream ends), 255 a v5 close of a channel. `feed` takes one
    whole message (the websocket adapter returns one per recv)."""

    STDOUT, STDERR, ERROR, CLOSE = 1, 2, 3, 255

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        if not data:
            return [], b""
        channel, payload = data[0], bytes(data[1:])
        if channel == self.STDOUT:
            return self.split(payload), b""
        if channel == self.STDERR:
            return [], payload
        if channel == self.ERROR and payload:
            return [], b"[api server] " + payload[:2000]
        return [], b""  # stdin echoes, closes of channels, unknown channels


class Request:
    """One request waiting for its replies, with what it may still accept."""

    def __init__(self, req_id: int, op: str) -> None:
        self.id = req_id
        self.op = op
        self.accepts = ACCEPTS.get(op, set())
        self.line = b""  # as sent: sent again on a new stream (the bridge drops repeats)
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
    """A stream to one bridge: a reader thread and the requests waiting on it.

    framing: how the stream is cut into stdout lines (default: Docker's attach
    stream). reattach: opens a new stream to the same bridge when this one is
    lost, or returns None when the sandbox is gone for good; without it a lost
    stream closes the connection (the Docker path).
    """

    def __init__(
        self,
        sock: Any,
        max_line: int,
        name: str,
        key: str,
        framing: Callable[[int], Framing] = _Demux,
        reattach: Callable[[], Stream | None] | None = None,
    ) -> None:
        self.sock = sock
        self._framing = framing
        self._reattach = reattach
        self.reattached = 0  # streams opened again after one was lost
        # Clear while a lost stream is being replaced: sends wait for the new one.
        self._stream_ok = threading.Event()
        self._stream_ok.set()
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
        try:
            while True:
                why = self._pump(self.sock)
                if self.closed.is_set() or self._reattach is None:
                    self._closing(why)
                    break
                if not self._replace_stream(why):
                    break
        finally:
            self.close()

    def _pump(self, sock: Any) -> str:
        """Read one stream until it ends; returns what ended it."""
        demux = self._framing(self.max_line)
        try:
            while True:
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    continue  # the timeout is for sends; a quiet bridge is fine
                if not data:
                    return "the stream ended"
                if self.closed.is_set():
                    return "closed here"
                lines, errors = demux.feed(data)
                if errors:
                    self.stderr.append(errors.decode(errors="replace")[-2000:])
                for line in lines:
                    self._dispatch(line)
                if demux.too_long:
                    self._reject(f"{demux.too_long} line(s) over {self.max_line} bytes")
                    demux.too_long = 0
        except OSError as exc:
            return f"reading failed: {exc.strerror or exc}"

    def _replace_stream(self, why: str) -> bool:
        """Open a new stream to the same bridge (within REATTACH_WINDOW); False: gone.

        The bridge never noticed: its kernel, its queue and its sequence numbers go
        on. What it wrote while no stream was open is lost; requests that were
        waiting keep waiting, and are sent again (see _send_again).
        """
        assert self._reattach is not None
        self._stream_ok.clear()
        log.info("sandbox %s: %s; attaching again", self.name, why)
        deadline = time.monotonic() + REATTACH_WINDOW
        delay, last = 0.1, why
        while not self.closed.is_set() and time.monotonic() < deadline:
            try:
                new = self._reattach()
            except Exception as exc:  # the API server may still be coming back
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 2.0)
                continue
            if new is None:
                self._closing(f"{why}; the sandbox is gone")
                return False
            new.settimeout(SEND_TIMEOUT)
            with self._send_lock:
                old, self.sock = self.sock, new
                self._send_again(new)
            with contextlib.suppress(OSError):
                old.close()
            if self.closed.is_set():  # closed while attaching: close() saw the old one
                with contextlib.suppress(OSError):
                    new.close()
                return False
            self.reattached += 1
            self._stream_ok.set()
            log.info("sandbox %s: attached again", self.name)
            return True
        self._closing(f"{why}; attaching again failed: {last}")
        return False

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
        if register and self._reattach is not None:
            request.line = line.encode()
        try:
            self._send(line.encode())
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
            self._send(line.encode())
        except OSError as exc:
            self.close()
            raise ConnectionError(str(exc) or type(exc).__name__) from exc

    def _send_again(self, stream: Any) -> None:
        """Send the waiting requests again on a new stream, oldest first: one sent into
        the lost stream may never have arrived. The bridge drops a request id it
        has seen, and answers one it has finished with the same done again."""
        with self._lock:
            waiting = sorted(self._pending.values(), key=lambda r: r.id)
        for request in waiting:
            if request.line:
                try:
                    stream.sendall(request.line)
                except OSError:
                    return  # lost again: the reader notices and starts over

    def _send(self, data: bytes) -> None:
        """Write data; raises OSError. Without reattach: one try on the one stream.

        With reattach (a websocket), a send that fails is tried once more on the
        new stream: a websocket message is delivered whole or not at all, so the
        bridge cannot receive it twice.
        """
        for attempt in (0, 1):
            if self._reattach is not None:
                self._stream_ok.wait(REATTACH_WINDOW + SEND_TIMEOUT)
            with self._send_lock:
                sock = self.sock
                try:
                    sock.sendall(data)
                    return
                except OSError:
                    if self._reattach is None or attempt or self.closed.is_set():
                        raise
                    # The stream is lost: make sure the reader notices, then wait.
                    self._stream_ok.clear()
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def forget(self, request: Request) -> None:
        with self._lock:
            self._pending.pop(request.id, None)

    def close(self) -> None:
        """Stop taking replies; everyone waiting gets an eof."""
        if self.closed.is_set():
            return
        self._closing("closed here")
        self.closed.set()
        self._stream_ok.set()
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
