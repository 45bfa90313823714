"""Request body limits, enforced before a body is buffered.

Daphne (through Twisted) spools a request body to a temporary file as it
arrives and calls the application only once the body is complete; it then
queues the whole body in memory for the application in one go. A guard inside
the ASGI application therefore acts too late: by the time it runs, a 4 GiB
POST has been written to disk and is being copied into the process's memory.
So the limit sits in two places:

- `install_daphne_guard()` swaps Daphne's request class for one that checks
  `Content-Length` as soon as the headers are in, counts the bytes of a chunked
  body as they arrive, and answers 413 and closes the connection once over,
  before anything is stored. Twisted does not give a request its path until
  the body is complete, so the path is read from the channel's parsed request
  line (a private attribute, pinned with Twisted's version and covered by
  tests/codeact_web/test_body_limit.py).
- `BodyLimitMiddleware` applies the same limits in ASGI terms, for servers that
  stream the body to the application (uvicorn, hypercorn) and as a second wall.

Only the upload route gets the large limit; every other route (login, sign-up,
forms, the admin) a small one.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.urls import Resolver404, resolve

UPLOAD_VIEWS = frozenset({"chat:upload"})


def body_limit_for(path: str) -> int:
    """The largest request body, in bytes, accepted for this path."""
    try:
        view_name = resolve(path).view_name
    except Resolver404:
        view_name = ""
    if view_name in UPLOAD_VIEWS:
        return int(settings.CODEACT_MAX_UPLOAD_BODY_BYTES)
    return int(settings.CODEACT_MAX_BODY_BYTES)


def refusal(path: str, limit: int) -> tuple[bytes, bytes]:
    """The 413 answer's content type and body: JSON for the upload route (the
    page shows its message), plain text elsewhere."""
    message = f"The request is too large: this address accepts at most {_size(limit)}."
    try:
        upload = resolve(path).view_name in UPLOAD_VIEWS
    except Resolver404:
        upload = False
    if upload:
        body = json.dumps({"error": {"code": "request_too_large", "message": message}})
        return b"application/json", body.encode()
    return b"text/plain; charset=utf-8", message.encode() + b"\n"


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.0f} MB"
    return f"{max(1, n // 1024)} KB"


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse an HTTP request whose body is over the path's limit: by its
    Content-Length before the application starts, or by counting the bytes the
    application reads."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, scope["path"], limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def watching_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await _send_413(send, scope["path"], limit)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Any, path: str, limit: int) -> None:
    content_type, body = refusal(path, limit)
    headers = [(b"content-type", content_type), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_daphne_guard() -> None:
    """Make Daphne build its HTTP requests from `LimitedWebRequest`.

    Daphne's factory looks the request class up by module attribute each time
    it builds a connection, and `daphne` imports the ASGI application before it
    starts listening, so calling this from the ASGI module is in time.
    """
    from daphne import http_protocol

    if not issubclass(http_protocol.WebRequest, _LimitedWebRequestMixin):
        http_protocol.WebRequest = type(
            "LimitedWebRequest", (_LimitedWebRequestMixin, http_protocol.WebRequest), {}
        )


class _LimitedWebRequestMixin:
    """Counts a request's body while Twisted receives it; over the limit, answers
    413 and closes the connection instead of storing another byte."""

    channel: Any
    content: Any
    requestHeaders: Any
    _body_limit = 0
    _body_seen = 0
    _body_refused = False
    _body_path = "/"

    def gotLength(self, length: int | None) -> None:
        # The request line is parsed before the headers; Request.path is set only
        # once the whole body is in, so read it from the channel.
        raw = getattr(self.channel, "_path", b"/") or b"/"
        self._body_path = unquote(raw.split(b"?", 1)[0].decode("ascii", "replace"))
        self._body_limit = body_limit_for(self._body_path)
        if length is not None and length > self._body_limit:
            self.content = BytesIO()
            self._refuse_body()
            return
        super().gotLength(length)  # type: ignore[misc]

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_refused:
            return
        self._body_seen += len(data)
        if self._body_seen > self._body_limit:
            self._refuse_body()
            return
        super().handleContentChunk(data)  # type: ignore[misc]

    def _refuse_body(self) -> None:
        self._body_refused = True
        # No "100 Continue" after the refusal: the client must not send the body.
        self.requestHeaders.removeHeader(b"Expect")
        content_type, body = refusal(self._body_path, self._body_limit)
        head = (
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: " + content_type + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        transport = self.channel.transport
        if transport is not None:
            transport.write(head + body)
        self.channel.loseConnection()
