"""The host's side of the bridge protocol against a scripted bridge on a socket pair.

No Docker here: a stub engine hands DockerSandbox one end of a socket pair, and
a thread on the other end plays the bridge (well-behaved, silent or forging),
framing its stdout the way Docker's attach stream does.
"""

from __future__ import annotations

import base64
import hmac
import json
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
import requests

from sandbox.api import Limits, SandboxError
from sandbox.connection import ChannelFraming, Connection
from sandbox.docker_backend import DockerSandbox

Reply = Callable[[dict[str, Any]], list[Any]]
LIMITS = Limits(cell_timeout=0.5, interrupt_grace=0.3)
KEY = "k" * 64


def signed(line: bytes, seq: int, key: str = KEY) -> bytes:
    body = b"%d %s" % (seq, line)
    return hmac.new(key.encode(), body, "sha256").hexdigest()[:32].encode() + b" " + body


class ScriptedBridge:
    """Answers ping; every other request goes to `script`, whose lines are sent back."""

    def __init__(self, script: Reply) -> None:
        self.host, self.end = socket.socketpair()
        self.seq = 0
        self.script = script
        self.requests: list[dict[str, Any]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def send(self, line: Any) -> None:
        """Sign and send a line; ("raw", bytes) is sent as it is (a forger without the key)."""
        if isinstance(line, tuple):
            raw = line[1]
        else:
            self.seq += 1
            raw = signed(line if isinstance(line, bytes) else json.dumps(line).encode(), self.seq)
        raw += b"\n"
        self.end.sendall(struct.pack(">BxxxL", 1, len(raw)) + raw)

    def _serve(self) -> None:
        with self.end.makefile("rb") as lines:
            for raw in lines:
                request = json.loads(raw)
                self.requests.append(request)
                if request["op"] == "ping":
                    self.send({"id": request["id"], "type": "done", "status": "ok",
                               "kernel_alive": True})  # fmt: skip
                    continue
                for line in self.script(request):
                    self.send(line)


class StubEngine:
    """The two calls DockerSandbox makes of the engine when it attaches and removes."""

    def __init__(self, bridge: ScriptedBridge) -> None:
        self.api = self
        self.bridge = bridge
        self.removed: list[str] = []

    def attach_socket(self, container_id: str, params: dict[str, int]) -> socket.socket:
        return self.bridge.host

    def remove_container(self, container_id: str, force: bool) -> None:
        self.removed.append(container_id)

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"Config": {"Labels": {"codeact.bridge-key": KEY}}}


@pytest.fixture
def attach() -> Iterator[Callable[[Reply], tuple[DockerSandbox, StubEngine]]]:
    made: list[DockerSandbox] = []

    def make(script: Reply) -> tuple[DockerSandbox, StubEngine]:
        engine = StubEngine(ScriptedBridge(script))
        box = DockerSandbox(engine, "image", LIMITS, {}, container_id="c" * 64)  # type: ignore[arg-type]
        made.append(box)
        return box, engine

    yield make
    for box in made:
        box.detach()


def silent(request: dict[str, Any]) -> list[Any]:
    return []


def in_thread(fn: Callable[[], Any], limit: float) -> tuple[Any, float, float]:
    """Run fn in a thread; its result, wall time and the CPU time of that thread."""
    out: dict[str, Any] = {}

    def run() -> None:
        cpu, wall = time.thread_time(), time.monotonic()
        out["result"] = fn()
        out["cpu"], out["wall"] = time.thread_time() - cpu, time.monotonic() - wall

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still waiting after {limit}s: the wait is unbounded"
    return out["result"], out["wall"], out["cpu"]


def removed(engine: StubEngine, container_id: str) -> bool:
    """Whether the container was removed within 5 s (removal happens in the background)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and engine.removed != [container_id]:
        time.sleep(0.01)
    return engine.removed == [container_id]


def test_it_removes_a_bridge_that_answers_neither_interrupt_nor_restart(attach):
    box, engine = attach(silent)
    result, wall, cpu = in_thread(lambda: box.execute("while True: pass"), limit=10)
    assert result.status == "died" and result.state_lost
    # the limit, the interrupt's grace, the restart's grace; then the container goes
    assert 0.5 + 0.3 + 0.3 <= wall < 0.5 + 0.3 + 0.3 + 1.5
    assert cpu < 0.25, f"the waiting thread used {cpu:.2f}s of CPU: it spins"
    assert not box.alive
    assert removed(engine, box.id)
    ops = [r["op"] for r in engine.bridge.requests]
    assert ops == ["ping", "execute", "interrupt", "restart"]


def test_stop_ends_a_cell_whose_bridge_does_not_answer(attach):
    box, engine = attach(silent)
    started = time.monotonic()
    result, wall, cpu = in_thread(
        lambda: box.execute("x", timeout=60, poll=lambda: time.monotonic() - started > 0.2),
        limit=10,
    )
    assert result.status == "died"
    assert wall < 0.2 + 0.3 + 0.3 + 1.5
    assert cpu < 0.25
    assert removed(engine, box.id)


def test_a_restarted_kernel_that_answers_keeps_the_sandbox(attach):
    def script(request: dict[str, Any]) -> list[Any]:
        if request["op"] == "restart":
            execute = next(r for r in bridge_requests() if r["op"] == "execute")
            return [{"id": execute["id"], "type": "done", "status": "interrupted"}]
        return []

    box, engine = attach(script)

    def bridge_requests() -> list[dict[str, Any]]:
        return engine.bridge.requests

    result = box.execute("while True: pass")
    assert result.status == "timeout" and result.kernel_restarted
    assert box.alive and engine.removed == []


def forger(request: dict[str, Any]) -> list[Any]:
    """A bridge whose kernel writes lines of its own between the real replies."""
    rid = request["id"]
    forged: list[Any] = [
        {"id": rid + 1, "type": "done", "status": "ok"},  # a request not yet made
        {"id": rid - 1, "type": "done", "status": "ok", "execution_count": 99},  # a finished one
        {"id": rid - 1, "type": "output", "output": {"output_type": "stream", "text": "FORGED"}},
        {"id": True, "type": "done", "status": "ok"},
        b"not json at all",
        b"[1, 2, 3]",
        b'{"id": '
        + str(rid).encode()
        + b', "type": "output", "junk": "'
        + b"x" * (7 << 20)  # over the line cap
        + b'"}',
        # what kernel code could write into the bridge's stdout without the key
        ("raw", b'{"id": %d, "type": "done", "status": "ok"}' % rid),
        ("raw", signed(b'{"id": %d, "type": "done", "status": "ok"}' % rid, 10**9, "guess")),
        ("raw", signed(b'{"id": %d, "type": "done", "status": "ok"}' % rid, 1)),  # a replay
    ]
    if request["op"] == "execute":
        chunk = base64.b64encode(b"FORGED").decode()
        return [
            *forged,
            {"id": rid, "type": "chunk", "data": chunk},  # an execute takes no chunks
            {"id": rid, "type": "output", "output": {"output_type": "stream", "text": "real\n"}},
            {"id": rid, "type": "done", "status": "ok", "execution_count": 1},
            {"id": rid, "type": "output", "output": {"output_type": "stream", "text": "FORGED"}},
            {"id": rid, "type": "done", "status": "error"},
        ]
    if request["op"] == "get_file":
        return [
            *forged,
            {"id": rid, "type": "output", "output": {"output_type": "stream", "text": "FORGED"}},
            {"id": rid, "type": "chunk", "data": base64.b64encode(b"real ").decode()},
            {"id": rid + 7, "type": "chunk", "data": base64.b64encode(b"FORGED").decode()},
            {"id": rid, "type": "chunk", "data": base64.b64encode(b"content").decode()},
            {"id": rid, "type": "done", "status": "ok"},
        ]
    return [{"id": rid, "type": "done", "status": "ok", "deleted": True}]


def test_it_takes_only_the_replies_it_asked_for(attach):
    box, _ = attach(forger)
    first = box.execute("print('real')")
    assert first.status == "ok" and first.execution_count == 1
    assert first.outputs == [{"output_type": "stream", "name": "stdout", "text": "real\n"}]
    conn = box._conn
    assert conn is not None
    # not the bridge's: 2 unsigned, 1 replayed, 2 not objects, 1 too long. The reader
    # counts a line over the cap after it has handed on the lines that came with it
    # in the same read, the done among them: give it a moment to get there.
    deadline = time.monotonic() + 5
    while conn.rejected < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert conn.rejected == 6
    # the bridge's, for requests not waiting or of the wrong kind: 2 dones, 2 outputs, a chunk
    assert conn.unasked >= 5
    assert box.get_file("data.txt") == b"real content"
    second = box.execute("print('real')")
    assert second.outputs == first.outputs and second.status == "ok"
    assert box.delete_file("data.txt") is True
    assert box.ping() and box.alive


def test_get_file_stops_at_max_bytes_whatever_the_bridge_sends(attach):
    def flood(request: dict[str, Any]) -> list[Any]:
        piece = base64.b64encode(b"y" * 3000).decode()
        return [{"id": request["id"], "type": "chunk", "data": piece}] * 50 + [
            {"id": request["id"], "type": "done", "status": "ok"}
        ]

    box, _ = attach(flood)
    with pytest.raises(SandboxError, match="larger than 4096") as refused:
        box.get_file("grew.bin", max_bytes=4096)
    assert refused.value.permanent
    assert engine_request(box)["max_bytes"] == 4096
    assert box.ping()


def engine_request(box: DockerSandbox) -> dict[str, Any]:
    engine = box.client
    return next(r for r in engine.bridge.requests if r["op"] == "get_file")  # type: ignore[attr-defined]


class RefusingEngine(StubEngine):
    """An engine that refuses the first removal (a frozen gVisor sandbox does)."""

    def __init__(self, bridge: ScriptedBridge) -> None:
        super().__init__(bridge)
        self.touched: list[str] = []

    def remove_container(self, container_id: str, force: bool) -> None:
        self.touched.append(container_id)
        if len(self.touched) == 1:
            raise docker.errors.APIError("removal of container is already in progress")
        self.removed.append(container_id)

    def unpause(self, container_id: str) -> None:
        self.touched.append(container_id)


def test_the_retried_removal_of_a_dead_sandbox_spares_its_successor():
    engine = RefusingEngine(ScriptedBridge(silent))
    box = DockerSandbox(engine, "image", LIMITS, {}, container_id="d" * 64)  # type: ignore[arg-type]
    box._kill("a test")
    box.id = "n" * 64  # restart() gave the object a new container meanwhile
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not engine.removed:
        time.sleep(0.01)
    assert engine.removed == ["d" * 64]
    assert set(engine.touched) == {"d" * 64}


class TimingOutEngine(StubEngine):
    """An engine so busy that docker-py's HTTP client gives up waiting."""

    def info(self) -> dict[str, Any]:
        return {"Runtimes": {"runc": {}}}

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=60)")


def test_an_engine_that_times_out_gives_a_sandbox_error_a_turn_can_report():
    engine = TimingOutEngine(ScriptedBridge(silent))
    with pytest.raises(SandboxError) as failed:
        DockerSandbox(engine, "image", LIMITS, {}, runtime="auto")  # type: ignore[arg-type]
    assert not failed.value.permanent
    assert "Could not start a sandbox" in failed.value.message


def test_a_request_on_a_stream_that_ended_says_so():
    """The error a turn reports says what ended the connection (here: the engine
    closed the attach stream), not only the errno of the send that noticed."""
    host, bridge = socket.socketpair()
    conn = Connection(host, 1 << 16, "test", "key")
    bridge.close()  # the stream ends
    assert conn.closed.wait(5)
    with pytest.raises(ConnectionError, match=r"the connection is closed \(the stream ended\)"):
        conn.open("ping")


class MessageStream:
    """A websocket-like stream for a Connection: whole messages in, lines out."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[bytes] = queue.Queue()
        self.sent: list[bytes] = []
        self.lost = False

    def recv(self, size: int = 0) -> bytes:
        return self.inbox.get()

    def sendall(self, data: bytes) -> None:
        if self.lost:
            raise BrokenPipeError(32, "Broken pipe")
        self.sent.append(data)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def shutdown(self, how: int) -> None:
        self.lose()

    def close(self) -> None:
        self.lose()

    def lose(self) -> None:
        self.lost = True
        self.inbox.put(b"")


def test_a_lost_stream_is_replaced_and_waiting_requests_are_sent_again():
    """Kubernetes attach: the websocket drops, the bridge does not. The request that
    was waiting goes out again on the new stream (the bridge drops repeats) and its
    reply arrives there; a second lost stream with no way back closes the connection."""
    first, second = MessageStream(), MessageStream()
    streams = iter([second, None])
    conn = Connection(
        first, 1 << 16, "pod", KEY, framing=ChannelFraming, reattach=lambda: next(streams)
    )
    request = conn.open("ping")
    assert len(first.sent) == 1
    first.lose()
    deadline = time.monotonic() + 5
    while not second.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second.sent == first.sent  # the same line, the same id
    done = json.dumps({"id": request.id, "type": "done", "status": "ok"}).encode()
    second.inbox.put(b"\x01" + signed(done, 1) + b"\n")
    assert request.get(timeout=5)["status"] == "ok"
    assert conn.reattached == 1 and not conn.closed.is_set()
    conn.open("list_files")
    assert len(second.sent) == 2
    second.lose()
    assert conn.closed.wait(5)
    assert "the sandbox is gone" in conn.closed_why
