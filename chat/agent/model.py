"""A streaming chat-completions client for any OpenAI-compatible endpoint.

Built on the official `openai` package. Failures are turned into one
`ModelError` with a code and a sentence the user can read; connection
failures before the first token are retried with backoff, never after (a
retry then would repeat text the user has already seen).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import openai

log = logging.getLogger(__name__)

ChatMessage = dict[str, str]


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


@dataclass
class Reply:
    """What one streamed completion produced."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    stopped: bool = False


class ModelClient(Protocol):
    def stream(
        self,
        messages: list[ChatMessage],
        on_text: Callable[[str], None],
        *,
        stop: list[str] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Reply: ...


@dataclass
class _Cancel:
    """Closes the response from a watcher thread so a stalled stream ends promptly."""

    should_stop: Callable[[], bool]
    interval: float = 0.1
    response: Any = None
    stopped: bool = False
    _done: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> None:
        while not self._done.wait(self.interval):
            if self.should_stop():
                self.stopped = True
                if self.response is not None:
                    try:
                        self.response.close()
                    except Exception:  # closing from another thread may race; the reader sees it
                        log.debug("closing a stopped stream raised", exc_info=True)
                return

    def finish(self) -> None:
        self._done.set()


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
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Reply:
        cancel = _Cancel(should_stop)
        watcher = threading.Thread(target=cancel.watch, name="model-stop-watch", daemon=True)
        watcher.start()
        reply = Reply()
        try:
            cancel.response = self._open(messages, stop, cancel)
            if cancel.response is not None:
                self._read(cancel.response, reply, on_text)
        except ModelError:
            if not cancel.stopped:
                raise
        except Exception as exc:
            if not cancel.stopped:
                raise self._translate(exc) from exc
        finally:
            cancel.finish()
        reply.stopped = cancel.stopped
        return reply

    def _open(self, messages: list[ChatMessage], stop: list[str] | None, cancel: _Cancel) -> Any:
        attempt = 0
        while True:
            try:
                return self._client.chat.completions.create(
                    model=self.config.model,
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                    temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens,
                    stop=stop or openai.NOT_GIVEN,
                )
            except (
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as exc:
                if attempt >= self.config.retries or cancel.stopped:
                    raise
                delay = self.config.backoff * (2**attempt)
                log.info("model request failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                attempt += 1
                if cancel._done.wait(delay) or cancel.stopped:
                    return None

    def _read(self, response: Any, reply: Reply, on_text: Callable[[str], None]) -> None:
        parts: list[str] = []
        for chunk in response:
            if getattr(chunk, "usage", None):
                usage = chunk.usage
                reply.usage = {
                    "prompt_tokens": int(usage.prompt_tokens or 0),
                    "completion_tokens": int(usage.completion_tokens or 0),
                }
            for choice in chunk.choices or ():
                text = choice.delta.content if choice.delta else None
                if text:
                    parts.append(text)
                    on_text(text)
                if choice.finish_reason:
                    reply.finish_reason = choice.finish_reason
        reply.text = "".join(parts)

    def _translate(self, exc: Exception) -> ModelError:
        where = self.config.base_url
        if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
            return ModelError(
                "model_timeout",
                f"The model server at {where} stopped answering for more than "
                f"{self.config.read_timeout:g} seconds.",
            )
        if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
            return ModelError("model_unreachable", f"Could not reach the model server at {where}.")
        if isinstance(exc, openai.APIStatusError):
            return _status_error(exc, self.config)
        return ModelError(
            "model_bad_stream",
            f"The model server at {where} sent a reply that could not be read "
            f"({type(exc).__name__}).",
        )


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
