"""A scripted OpenAI-compatible server: real HTTP and server-sent events.

Tests queue `Script`s; each chat-completions request takes the next one (or
the default). A script can stream text at a chosen pace, call the `python`
function (its arguments streamed in pieces, as OpenAI does), fail with a
status, stall, send a malformed event or drop the connection. `pause()` closes the
listening socket (connection refused) and `resume()` brings it back on the
same port.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "Hello from the scripted model."


@dataclass
class Script:
    text: str = DEFAULT_TEXT
    chunks: list[str] | None = None
    delay: float = 0.0
    first_delay: float = 0.0
    # Pace by the clock: token k is due `k * delay` after the first, as from a
    # server whose speed does not depend on how busy this machine is (a late
    # token is sent at once and the next is still due on time). Without it each
    # token waits `delay` after the previous one was written.
    on_schedule: bool = False
    status: int = 200
    stall_after: int | None = None
    stall_seconds: float = 30.0
    malformed_after: int | None = None
    drop_after: int | None = None
    error_after: int | None = None  # an error event in the middle of the reply
    finish_reason: str = "stop"
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    )
    # A function call after the text: `tool_code` is sent as {"code": ...}, or
    # `tool_arguments` as they are (malformed ones, say), in `pieces` chunks.
    tool_code: str | None = None
    tool_arguments: str | None = None
    tool_name: str = "python"
    tool_id: str = "call_scripted"
    pieces: int = 3

    def __post_init__(self) -> None:
        if self.tool_code is not None and self.tool_arguments is None:
            self.tool_arguments = json.dumps({"code": self.tool_code})
        if self.tool_arguments is not None:
            if self.text == DEFAULT_TEXT and self.chunks is None:
                self.text = ""  # a call alone, unless the test gives text
            if self.finish_reason == "stop":
                self.finish_reason = "tool_calls"

    def argument_pieces(self) -> list[str]:
        arguments = self.tool_arguments or ""
        size = max(1, -(-len(arguments) // max(1, self.pieces)))
        return [arguments[i : i + size] for i in range(0, len(arguments), size)]

    def tokens(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\s*\S+|\s+", self.text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: fifty turns asking at once overflow it,
    # and a connection the kernel dropped from a full queue waits for a resend.
    request_queue_size = 256
    owner: ScriptedModelServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = self.server.owner.models_status
        if self.path.rstrip("/").endswith("/models") and status != 200:
            self._json(status, {"error": {"message": f"scripted failure {status}"}})
        elif self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        elif self.path.rstrip("/").endswith("/_paces"):
            self._json(200, {"paces": self.server.owner.take_paces()})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server.owner
        if self.path.rstrip("/").endswith("/_scripts"):
            # A test outside this process (the compose tier's model container) queues scripts.
            owner.push(*(Script(**fields) for fields in body["scripts"]))
            self._json(200, {"queued": len(owner.scripts)})
            return
        script = owner._take(body)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        if script.status != 200:
            self._json(script.status, {"error": {"message": f"scripted failure {script.status}"}})
            return
        if not body.get("stream"):
            self._complete(body, script)
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._stream(body, script)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _complete(self, body: dict[str, Any], script: Script) -> None:
        self._json(
            200,
            {
                "id": "cmpl-scripted",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "scripted"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(script.tokens())}
                        | (
                            {"tool_calls": [_tool_call(script, script.tool_arguments)]}
                            if script.tool_arguments is not None
                            else {}
                        ),
                        "finish_reason": script.finish_reason,
                    }
                ],
                "usage": script.usage,
            },
        )

    def _event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _chunk(
        self, body: dict[str, Any], delta: dict[str, Any], finish: str | None
    ) -> dict[str, Any]:
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def _stream(self, body: dict[str, Any], script: Script) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        time.sleep(script.first_delay)
        self._event(self._chunk(body, {"role": "assistant", "content": ""}, None))
        first = last = 0.0
        tokens = _until_stop(script.tokens(), body.get("stop"))
        for index, token in enumerate(tokens):
            if index == script.stall_after:
                time.sleep(script.stall_seconds)
                return
            if index == script.malformed_after:
                self._event('{"choices": [{"delta": {"content": "oops"')
                self.wfile.write(b"data: this is not json\n\n")
                self.wfile.flush()
                return
            if index == script.error_after:
                self._event({"error": {"message": "CUDA out of memory", "code": 500}})
                return
            if index == script.drop_after:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            pause = _pause(script, index, first, time.monotonic())
            if pause:
                time.sleep(pause)
            self._event(self._chunk(body, {"content": token}, None))
            last = time.monotonic()
            first = first or last
        if len(tokens) > 1 and last > first:
            self.server.owner.record_pace((len(tokens) - 1) / (last - first))
        if script.tool_arguments is not None:
            # The id, type and name come first with empty arguments, then the
            # arguments in pieces, each naming its call by index only.
            self._event(self._chunk(body, {"tool_calls": [_tool_call(script, "")]}, None))
            for piece in script.argument_pieces():
                if script.delay:
                    time.sleep(script.delay)
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                self._event(self._chunk(body, delta, None))
        self._event(self._chunk(body, {}, script.finish_reason))
        if script.usage and (body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = self._chunk(body, {}, None) | {"choices": [], "usage": script.usage}
            self._event(usage_chunk)
        self._event("[DONE]")


def _tool_call(script: Script, arguments: str | None) -> dict[str, Any]:
    return {
        "index": 0,
        "id": script.tool_id,
        "type": "function",
        "function": {"name": script.tool_name, "arguments": arguments or ""},
    }


def _pause(script: Script, index: int, first: float, now: float) -> float:
    """How long to wait before writing token `index`; the first one was written at
    `first` (monotonic seconds)."""
    if not index or not script.delay:
        return 0.0
    if script.on_schedule:
        return max(0.0, first + index * script.delay - now)
    return script.delay


def _until_stop(tokens: list[str], stop: Any) -> list[str]:
    """Cut the reply where a stop sequence starts, and leave the sequence out,
    as vLLM, llama.cpp and OpenAI do."""
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if s]
    text = "".join(tokens)
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    if cut == -1:
        return tokens
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) >= cut:
            kept.append(token[: cut - length])
            break
        kept.append(token)
        length += len(token)
    return [t for t in kept if t]


class ScriptedModelServer:
    def __init__(self, default: Script | None = None) -> None:
        self.default = default or Script()
        self.scripts: deque[Script] = deque()
        # Picks a script from the request when none is queued (concurrent clients).
        self.route: Callable[[dict[str, Any]], Script | None] | None = None
        self.record = True
        self.requests: list[dict[str, Any]] = []
        # Tokens per second each streamed reply was written at, first to last token.
        self.paces: list[float] = []
        # What GET /models answers (a readiness probe asks it): 200 with the model list,
        # or this status with an error.
        self.models_status = 200
        self.port = 0
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedModelServer:
        server = _Server((self.host, self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="scripted-model", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    pause = stop

    def resume(self) -> None:
        self.start()

    def push(self, *scripts: Script) -> None:
        with self._lock:
            self.scripts.extend(scripts)

    def reset(self) -> None:
        with self._lock:
            self.route = None
            self.models_status = 200
            self.scripts.clear()
            self.requests.clear()
            self.paces.clear()

    def record_pace(self, tokens_per_second: float) -> None:
        with self._lock:
            self.paces.append(tokens_per_second)

    def take_paces(self) -> list[float]:
        with self._lock:
            paces, self.paces = self.paces, []
        return paces

    def _take(self, body: dict[str, Any]) -> Script:
        with self._lock:
            if self.record:
                self.requests.append(body)
            if self.scripts:
                return self.scripts.popleft()
        routed = self.route(body) if self.route is not None else None
        return routed or self.default


if __name__ == "__main__":
    import sys

    # python -m tests.support.scripted_model [PORT [HOST]]; scripts are queued with
    # POST /v1/_scripts {"scripts": [{"text": ...}, ...]}.
    server = ScriptedModelServer()
    server.port = int(sys.argv[1]) if len(sys.argv) > 1 else 8089
    server.host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server.start()
    print(f"scripted model server on {server.url}")
    threading.Event().wait()
