"""A Redis restart in the middle of a turn loses nothing that was persisted.

The app (Daphne and a worker) runs against a Redis of its own, so the test can
kill and restart it without touching the machine's shared one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect

from chat.models import Message, Turn
from tests.conftest import session_cookie
from tests.factories import ConversationFactory
from tests.support.processes import free_port, start_web, start_worker
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

WORDS = [f"w{i} " for i in range(80)]


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def redis_server():
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def app(redis_server, scripted_server):
    port = free_port()
    worker = start_worker(name="redis-restart-worker", REDIS_URL=redis_server.url)
    web = start_web(port, REDIS_URL=redis_server.url)
    yield port
    web.stop()
    worker.stop()


async def test_a_redis_restart_mid_turn_loses_nothing(app, redis_server, model_server, owner):
    conversation = await database_sync_to_async(ConversationFactory)(owner=owner)
    cookie = await database_sync_to_async(session_cookie)(owner)
    model_server.push(Script(chunks=WORDS, delay=0.05))
    url = f"ws://127.0.0.1:{app}/ws/conversations/{conversation.id}/"
    frames = []
    async with connect(
        url, origin=f"http://127.0.0.1:{app}", additional_headers={"Cookie": cookie}
    ) as ws:
        await ws.recv()  # hello
        await ws.send(json.dumps({"type": "user_message", "text": "Count"}))
        while not any(f["type"] == "delta" for f in frames):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        redis_server.kill()  # mid-stream: the broker, the channel layer and live text go
        await asyncio.sleep(1.0)
        redis_server.start()

    # The worker carries on; everything it stored is there when the turn ends.
    def finished():
        return (
            Turn.objects.filter(conversation=conversation).exclude(status__in=Turn.ACTIVE).first()
        )

    deadline = time.monotonic() + 30
    while (turn := await database_sync_to_async(finished)()) is None:
        assert time.monotonic() < deadline, "the turn did not finish after Redis came back"
        await asyncio.sleep(0.2)
    assert turn.status == "done", (turn.error_code, turn.error)
    reply = await database_sync_to_async(Message.objects.get)(
        conversation=conversation, role="assistant"
    )
    assert reply.status == "complete" and reply.content == "".join(WORDS)

    # A client that reconnects resyncs by sequence number and sees it all.
    async with connect(
        url, origin=f"http://127.0.0.1:{app}", additional_headers={"Cookie": cookie}
    ) as ws:
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        sync = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert sync["type"] == "sync" and sync["last_seq"] == hello["last_seq"]
    messages = [e["message"] for e in sync["events"] if e["type"] == "message"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == "".join(WORDS)
