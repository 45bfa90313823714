"""A streaming chat-completions client for any OpenAI-compatible endpoint.

Built on the official `openai` package. Failures are turned into one
`ModelError` with a code and a sentence the user can read; connection
failures before the first token are retried with backoff, never after (a
retry then would repeat text the user has already seen).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import openai
from openai.types.chat import ChatCompletion

from chat.agent.formats import ChatMessage, ToolCall

__all__ = [
    "ChatMessage",
    "ModelClient",
    "ModelError",
    "ModelSettings",
    "OpenAIModelClient",
    "Reply",
    "ToolCall",
]

log = logging.getLogger(__name__)

_POLL = 0.05  # how often a waiting stream checks for Stop
_RETRYABLE = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)


class ModelError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ModelSettings:
    base_url: str
    model: str
    api_key: str = "not-needed"
    temperature: float = 0.2
    max_tokens: int = 1024
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 2
    backoff: float = 0.5
    # Tokens closer together than this reach `on_text` together (0: each at once).
    wake_interval: float = 0.0


@dataclass
class Reply:
    """What one streamed completion produced."""

    text: str = ""
    finish_reason: str | None = None  # "tool_calls" for a reply that calls a function
    usage: dict[str, int] | None = None
    stopped: bool = False
    tool_calls: list[ToolCall] = field(default_factory=list)


class _ToolCalls:
    """Function calls put together from streamed deltas: each delta names its call
    by `index` and carries a piece of it (the id and name come once, the
    arguments in pieces across many chunks)."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def add(self, delta: Any) -> None:
        index = delta.get("index")
        call_id = delta.get("id") or ""
        if not isinstance(index, int):  # servers that leave it out: a new id, a new call
            last = max(self._calls, default=-1)
            new = last == -1 or (call_id and call_id != self._calls[last][0])
            index = last + 1 if new else last
        call = self._calls.setdefault(index, ["", "", ""])
        function = delta.get("function") or {}
        if call_id and not call[0]:
            call[0] = str(call_id)
        if function.get("name") and not call[1]:
            call[1] = str(function["name"])
        if function.get("arguments"):
            call[2] += str(function["arguments"])

    def calls(self) -> list[ToolCall]:
        return [ToolCall(*self._calls[index]) for index in sorted(self._calls)]


class ModelClient(Protocol):
    def stream(
        self,
        messages: list[ChatMessage],
        on_text: Callable[[str], None],
        *,
        stop: list[str] | None = None,
        tools: list[dict[str, Any]] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_start: Callable[[], None] = lambda: None,
    ) -> Reply: ...


@dataclass
class _Call:
    """One request's shared state between the caller and the reading thread."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    response: Any = None


class _Inbox:
    """What the reading thread hands to the caller, taken all at once. The caller
    is woken for the first chunk, for the end or an error, and otherwise at most
    once per `wake_interval`: chunks in between wait for that wake-up (or the
    caller's own poll), so a fast stream costs the caller a few wake-ups per
    interval instead of one per token."""

    def __init__(self, wake_interval: float = 0.0) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._items: list[tuple[str, Any]] = []
        self._wake_interval = wake_interval
        self._woken = 0.0  # when the caller was last woken; 0: never

    def put(self, item: tuple[str, Any]) -> None:
        now = time.monotonic()
        with self._ready:
            self._items.append(item)
            if item[0] != "chunk" or not self._woken or now - self._woken >= self._wake_interval:
                self._woken = now
                self._ready.notify()

    def take(self, timeout: float) -> list[tuple[str, Any]]:
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            items, self._items = self._items, []
        return items


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The data of each server-sent event, in order. Chat completions use data
    alone: `event:`, `id:` and `retry:` fields and `:` comments are skipped, and
    the lines of a multi-line data field are joined with newlines."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _abort(stream: Any) -> None:
    """Make a blocked read on the stream return now, from another thread.

    Closing the response does not wake a thread blocked in recv(); shutting
    the socket down does.
    """
    try:
        network = stream.response.extensions.get("network_stream")
        sock = network.get_extra_info("socket") if network is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        else:
            stream.close()
    except Exception:  # the stream may be finishing at the same moment
        log.debug("aborting a stopped stream raised", exc_info=True)


class OpenAIModelClient:
    def __init__(self, config: ModelSettings) -> None:
        self.config = config
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "not-needed",
            max_retries=0,
            timeout=openai.Timeout(
                config.read_timeout, connect=config.connect_timeout, read=config.read_timeout
            ),
        )

    def stream(
        self,
        messages: list[ChatMessage],
        on_text: Callable[[str], None],
        *,
        stop: list[str] | None = None,
        tools: list[dict[str, Any]] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_start: Callable[[], None] = lambda: None,
    ) -> Reply:
        """Stream one completion, calling on_text per delta in this thread.

        With `tools`, the model may call them (`tool_choice: auto`); the calls
        come back whole in `Reply.tool_calls`, after the stream ended.

        The HTTP exchange runs in a helper thread so that Stop is honoured
        within ~50 ms in every phase: connecting, waiting for the first
        token, or in the middle of a stalled stream. `on_start` runs in this
        thread once the request is under way, so its work overlaps the wait
        for the first token.
        """
        call = _Call()
        inbox = _Inbox(self.config.wake_interval)
        reader = threading.Thread(
            target=self._produce,
            args=(messages, stop, tools, call, inbox),
            name="model-stream",
            daemon=True,
        )
        reader.start()
        reply = Reply()
        parts: list[str] = []
        calls = _ToolCalls()
        kind = "idle"
        try:
            on_start()
            while kind != "end":
                # Everything that arrived since the last look, in one wake-up: under
                # load, chunks queue up while this thread waits for the GIL.
                for kind, item in inbox.take(_POLL):
                    if kind == "error":
                        raise self._translate(item) if not isinstance(item, ModelError) else item
                    if kind == "end":
                        break
                    self._take(item, reply, parts, calls, on_text)
                if kind != "end" and should_stop():
                    reply.stopped = True
                    break
        finally:
            reply.text = "".join(parts)
            reply.tool_calls = calls.calls()
            if kind not in ("end", "error"):  # stopped, or on_text raised: let the request go
                call.cancelled.set()
                if call.response is not None:
                    _abort(call.response)
        if reply.finish_reason is None and not reply.stopped:
            # Every OpenAI-compatible server ends a reply with a finish_reason;
            # without one the connection was cut and the text is incomplete.
            raise self._error(
                "model_bad_stream",
                "The model server closed the connection before the reply was complete.",
            )
        return reply

    def _produce(
        self,
        messages: list[ChatMessage],
        stop: list[str] | None,
        tools: list[dict[str, Any]] | None,
        call: _Call,
        inbox: _Inbox,
    ) -> None:
        try:
            call.response = self._open(self._body(messages, stop, tools), call)
            if call.response is None or call.cancelled.is_set():
                return
            done = False
            response = call.response.response
            try:
                for data in _sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        done = True  # read on to the end of the body all the same
                    elif not done:
                        inbox.put(("chunk", self._decode(data)))
            finally:
                response.close()  # the connection goes back to the pool
            inbox.put(("end", None))
        except Exception as exc:
            if not call.cancelled.is_set():
                inbox.put(("error", exc))

    def _decode(self, data: str) -> Any:
        """One event's JSON: a chunk, or the error a server reports mid-reply."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._error(
                "model_bad_stream",
                "The model server sent a reply that could not be read (an event that is not JSON).",
            ) from None
        if isinstance(chunk, dict) and chunk.get("error"):
            error = chunk["error"]
            detail = error.get("message") if isinstance(error, dict) else error
            detail = " ".join(str(detail).split())[:200]
            raise ModelError(
                "model_server_error", f"The model server failed in the middle of a reply: {detail}"
            )
        return chunk

    def _open(self, body: dict[str, Any], call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                # The raw endpoint: `chat.completions.create` first walks every
                # message through the SDK's type-driven transform, ~15 ms of CPU
                # per request that every concurrent turn would pay in turn. The
                # events are read off the response as lines (`_sse_data`): the
                # SDK's own decoder and a typed chunk per token cost ~2x the CPU
                # of the whole read, the largest per-token cost of a turn.
                return self._client.post(
                    "/chat/completions",
                    body=body,
                    cast_to=ChatCompletion,
                    stream=True,
                    stream_cls=openai.Stream[object],
                )
            except _RETRYABLE as exc:
                if attempt >= self.config.retries:
                    raise
                delay = self.config.backoff * (2**attempt)
                log.info("model request failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                attempt += 1
                if call.cancelled.wait(delay):
                    return None

    def _body(
        self,
        messages: list[ChatMessage],
        stop: list[str] | None,
        tools: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if stop:
            body["stop"] = stop
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        return body

    def _take(
        self,
        chunk: Any,
        reply: Reply,
        parts: list[str],
        calls: _ToolCalls,
        on_text: Callable[[str], None],
    ) -> None:
        try:
            usage = chunk.get("usage")
            if usage:
                reply.usage = {
                    "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                    "completion_tokens": int(usage.get("completion_tokens") or 0),
                }
            texts = []
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                texts.append((delta.get("content"), choice.get("finish_reason")))
                for tool_call in delta.get("tool_calls") or ():
                    calls.add(tool_call)
        except (AttributeError, TypeError, ValueError):
            raise self._error(
                "model_bad_stream",
                "The model server sent a reply that could not be read "
                "(a chunk of an unexpected shape).",
            ) from None
        for text, finish_reason in texts:
            if text:
                text = str(text)
                parts.append(text)
                on_text(text)
            if finish_reason:
                reply.finish_reason = str(finish_reason)

    def _translate(self, exc: Exception) -> ModelError:
        if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
            return self._error(
                "model_timeout",
                f"The model server stopped answering for more than "
                f"{self.config.read_timeout:g} seconds.",
            )
        if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
            return self._error("model_unreachable", "Could not reach the model server.")
        if isinstance(exc, openai.APIStatusError):
            error = _status_error(exc, self.config)
            return self._error(error.code, error.message)
        return self._error(
            "model_bad_stream",
            f"The model server sent a reply that could not be read ({type(exc).__name__}).",
        )

    def _error(self, code: str, message: str) -> ModelError:
        """The error users see names no address (it is the operator's business,
        and may be internal); the worker's log says which server it was."""
        log.warning("model %s at %s: %s %s", self.config.model, self.config.base_url, code, message)
        return ModelError(code, message)


def _status_error(exc: openai.APIStatusError, config: ModelSettings) -> ModelError:
    status = exc.status_code
    detail = _short_detail(exc)
    if status in (401, 403):
        return ModelError("model_auth", f"The model server refused the API key (HTTP {status}).")
    if status == 404:
        return ModelError(
            "model_not_found",
            f"The model server does not serve the model '{config.model}' (HTTP 404).",
        )
    if status == 429:
        return ModelError(
            "model_rate_limited", "The model server is busy (HTTP 429). Try again shortly."
        )
    if status >= 500:
        return ModelError("model_server_error", f"The model server failed (HTTP {status}){detail}.")
    return ModelError(
        "model_rejected", f"The model server rejected the request (HTTP {status}){detail}."
    )


def _short_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = str(inner.get("message", "")) if isinstance(inner, dict) else str(inner)
    message = " ".join(message.split())[:200]
    return f": {message}" if message else ""
