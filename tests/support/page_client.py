"""A websocket client that keeps a conversation the way the chat page does.

It follows static/chat/socket.js and app.js: on every (re)connect it sends
`resume` with the last sequence number it holds; a persisted event past the
next number, or a delta it cannot place, makes it resync; a snapshot that lags
behind the deltas already applied keeps the longer text; a socket that drops is
reopened with backoff. What it ends up holding (`view()`) is compared with the
database rows (`tests.support.chaos.db_view`).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

PERSISTED = ("message", "turn", "execution", "output", "file", "conversation")
FINAL = ("done", "failed", "interrupted", "stopped")
RESUME_RETRY = 2.0  # the page waits 5 s after a refused resync; a test need not


class PageClient:
    def __init__(
        self,
        port: int,
        cookie: str,
        conversation_id: str,
        *,
        site: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`site` is the page's origin (default http://127.0.0.1:port); an https
        site is reached over wss with `tls` (e.g. trusting a self-signed certificate)."""
        self.origin = site or f"http://127.0.0.1:{port}"  # as a browser sends it
        socket_base = re.sub(r"^http", "ws", self.origin)
        self.url = f"{socket_base}/ws/conversations/{conversation_id}/"
        self.tls = tls
        self.cookie = cookie
        self.deltas = 0  # token deltas received: the answer streamed, not arrived whole
        self.ws: ClientConnection | None = None
        self.last_seq = 0
        self.resume_pending = False
        self.rows: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in PERSISTED}
        self.errors: list[dict[str, Any]] = []  # error frames other than refused resyncs
        self.refused_resumes = 0
        self.connects = 0
        self.acks: list[dict[str, Any]] = []
        self.parts_id: int | None = None
        self.parts: list[str] = []
        self.frames_in_parts = 0  # large frames that came in `part` frames

    # --- connection ----------------------------------------------------------------

    async def connect(self, timeout: float = 60.0) -> None:
        """Open the socket, retrying with backoff (the server may be restarting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = 0
        while True:
            try:
                self.ws = await connect(
                    self.url,
                    origin=self.origin,  # type: ignore[arg-type]
                    additional_headers={"Cookie": self.cookie},
                    max_size=None,
                    open_timeout=10,
                    **({"ssl": self.tls} if self.tls is not None else {}),
                )
                hello = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
                assert hello["type"] == "hello", hello
                break
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
                attempt += 1
        self.connects += 1
        self.resume_pending = False
        await self.request_resume()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a frame, reconnecting first if the socket is gone (the page's outbox)."""
        while True:
            if self.ws is None:
                await self.connect()
            assert self.ws is not None
            try:
                await self.ws.send(json.dumps(frame))
                return
            except ConnectionClosed:
                self.ws = None

    async def request_resume(self) -> None:
        if not self.resume_pending:
            self.resume_pending = True
            await self.send({"type": "resume", "after_seq": self.last_seq})

    async def pump_until(self, done: Callable[[PageClient], bool], timeout: float) -> None:
        """Read and apply frames until `done(self)`, reconnecting when the socket drops."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out; turns {self.turn_statuses()}")
            if self.ws is None:
                await self.connect(timeout=remaining)
            assert self.ws is not None
            try:
                raw = await asyncio.wait_for(self.ws.recv(), min(remaining, 5.0))
            except TimeoutError:
                continue
            except ConnectionClosed:
                self.ws = None
                continue
            event = self.join_parts(json.loads(raw))
            if event is not None:
                await self.apply(event)

    def join_parts(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The frame itself, or once its last `part` arrived, the large frame the
        parts carry; None while parts are still coming (socket.js does the same)."""
        if event["type"] != "part":
            return event
        if self.parts_id != event["id"]:
            self.parts_id, self.parts = event["id"], []
        self.parts.append(event["text"])
        if not event["last"]:
            return None
        self.parts_id = None
        self.frames_in_parts += 1
        joined: dict[str, Any] = json.loads("".join(self.parts))
        return joined

    # --- state ------------------------------------------------------------------------

    async def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind in PERSISTED:
            await self._seen(event["seq"])
            await self._store(kind, event)
        elif kind == "sync":
            self.resume_pending = False
            for inner in event["events"]:
                await self._store(inner["type"], inner)
            kept = set(event["file_ids"])
            self.rows["file"] = {k: v for k, v in self.rows["file"].items() if k in kept}
            self.last_seq = max(self.last_seq, event["last_seq"])
        elif kind == "file_deleted":
            await self._seen(event["seq"])
            self.rows["file"].pop(event["file_id"], None)
        elif kind == "delta":
            self.deltas += 1
            await self._append(self.rows["message"].get(event["message_id"]), "content", event)
        elif kind == "output_delta":
            await self._seen(event["seq"])
            await self._append(self.rows["output"].get(event["output_id"]), "text", event)
        elif kind == "ack":
            self.acks.append(event)
        elif kind == "error":
            if event["code"] == "quota_resumes":
                self.refused_resumes += 1
                self.resume_pending = False
                await asyncio.sleep(RESUME_RETRY)
                await self.request_resume()
            else:
                self.errors.append(event)

    async def _seen(self, seq: int) -> None:
        if seq > self.last_seq + 1:
            await self.request_resume()
        else:
            self.last_seq = max(self.last_seq, seq)

    async def _store(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "conversation":
            return
        data = dict(event[kind])
        old = self.rows[kind].get(data["id"])
        if kind == "output" and data["execution_id"] not in self.rows["execution"]:
            await self.request_resume()  # the page parks it and asks for its cell
        field = {"message": "content", "output": "text"}.get(kind)
        if old is not None and field:
            # A snapshot can lag behind deltas already applied; keep the longer prefix.
            have, got = old[field], data[field]
            if len(have) > len(got) and have.startswith(got) and _streaming(kind, data):
                data[field] = have
        self.rows[kind][data["id"]] = data

    async def _append(self, row: dict[str, Any] | None, field: str, event: dict[str, Any]) -> None:
        if row is None or event["offset"] > len(row[field]):
            await self.request_resume()
            return
        have = row[field]
        if event["offset"] + len(event["text"]) > len(have):
            row[field] = have + event["text"][len(have) - event["offset"] :]

    # --- what the user sees -------------------------------------------------------------

    def turn_statuses(self) -> dict[int, str]:
        return {t["id"]: t["status"] for t in self.rows["turn"].values()}

    def turns_final(self, count: int) -> bool:
        statuses = list(self.turn_statuses().values())
        return len(statuses) >= count and all(s in FINAL for s in statuses)

    def view(self) -> dict[str, dict[int, tuple[Any, ...]]]:
        """The conversation as shown: the same shape as chaos.db_view."""
        rows = self.rows
        return {
            "messages": {
                i: (m["role"], m["status"], m["content"]) for i, m in rows["message"].items()
            },
            "turns": {i: (t["status"], t["error_code"]) for i, t in rows["turn"].items()},
            "executions": {i: (e["status"],) for i, e in rows["execution"].items()},
            "outputs": {i: (o["output_type"], o["text"]) for i, o in rows["output"].items()},
            "files": {i: (f["path"], f["size"]) for i, f in rows["file"].items()},
        }


def _streaming(kind: str, data: dict[str, Any]) -> bool:
    return kind == "output" or data.get("status") == "streaming"
