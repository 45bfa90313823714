"""The websocket end to end: real ASGI app, Redis channel layer, Celery worker,
PostgreSQL and the scripted model server over real HTTP."""

import asyncio
import json
import time
from contextlib import asynccontextmanager

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.test import Client

from chat.actions.conversations import do_delete_conversation
from chat.models import Message, Turn
from codeact_web.asgi import application
from tests.conftest import open_socket
from tests.factories import ConversationFactory
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner, title="New conversation")


def persisted(frames):
    return [f for f in frames if f["type"] in ("message", "turn", "conversation")]


def assert_deltas_rebuild(frames, message_id, text):
    deltas = [f for f in frames if f["type"] == "delta" and f["message_id"] == message_id]
    rebuilt = ""
    for delta in deltas:
        assert delta["offset"] == len(rebuilt.encode("utf-16-le")) // 2
        rebuilt += delta["text"]
    assert rebuilt == text
    return deltas


async def send_and_finish(sock, text, timeout=15.0):
    await sock.send({"type": "user_message", "text": text, "client_id": "c1"})
    return await sock.turn_finished(timeout)


async def test_it_streams_a_reply_and_stores_it(worker, model_server, owner, conversation):
    answer = "Two plus two is **4**. Emoji count as two units: 🙂 done."
    # Slower than CODEACT_DELTA_INTERVAL: each token goes out in a frame of its own.
    model_server.push(Script(text=answer, delay=0.06))
    async with open_socket(owner, conversation.id) as sock:
        assert sock.connected
        hello = await sock.receive()
        assert hello == {"type": "hello", "last_seq": 0}
        finished = await send_and_finish(sock, "What is 2+2?")
    # The reply is saved (and announced) before the turn ends.
    final = next(
        f
        for f in sock.frames
        if f["type"] == "message"
        and f["message"]["role"] == "assistant"
        and f["message"]["status"] == "complete"
    )

    assert finished["turn"]["status"] == "done"
    assert any(f["type"] == "ack" and f["client_id"] == "c1" for f in sock.frames)
    seqs = [f["seq"] for f in persisted(sock.frames)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    deltas = assert_deltas_rebuild(sock.frames, final["message"]["id"], answer)
    assert len(deltas) > 5
    assert "<strong>4</strong>" in final["message"]["html"]
    statuses = [f["turn"]["status"] for f in sock.frames if f["type"] == "turn"]
    assert statuses == ["queued", "running", "done"]

    reply = await database_sync_to_async(Message.objects.get)(pk=final["message"]["id"])
    assert reply.content == answer and reply.status == "complete"
    assert reply.usage == {"prompt_tokens": 11, "completion_tokens": 7}
    sent = model_server.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": "What is 2+2?"}


async def test_the_next_turn_sees_the_history(worker, model_server, owner, conversation):
    model_server.push(Script(text="Noted: your name is Ada."), Script(text="You are Ada."))
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await send_and_finish(sock, "My name is Ada.")
        await send_and_finish(sock, "What is my name?")
    roles = [(m["role"], m["content"]) for m in model_server.requests[-1]["messages"][1:]]
    assert roles == [
        ("user", "My name is Ada."),
        ("assistant", "Noted: your name is Ada."),
        ("user", "What is my name?"),
    ]


async def test_resume_replays_what_a_client_missed(worker, model_server, owner, conversation):
    model_server.push(Script(text="First answer."))
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await send_and_finish(sock, "Question one")
        last_seq = max(f["seq"] for f in persisted(sock.frames))

    async with open_socket(owner, conversation.id) as sock:
        hello = await sock.receive()
        assert hello["last_seq"] >= last_seq
        await sock.send({"type": "resume", "after_seq": 0})
        sync = await sock.receive_until(lambda f: f["type"] == "sync")
        contents = [e["message"]["content"] for e in sync["events"] if e["type"] == "message"]
        assert contents == ["Question one", "First answer."]
        await sock.send({"type": "resume", "after_seq": sync["last_seq"]})
        assert (await sock.receive_until(lambda f: f["type"] == "sync"))["events"] == []


async def test_a_resync_larger_than_a_frame_comes_in_parts(owner, conversation, settings):
    settings.CODEACT_SEND_FRAME_BYTES = 4096
    long_text = "Row " * 5000  # 20 KB: five parts and more
    await database_sync_to_async(Message.objects.create)(
        conversation=conversation, role="assistant", content=long_text, seq=1
    )
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()  # hello
        await sock.send({"type": "resume", "after_seq": 0})
        sync = await sock.receive_until(lambda f: f["type"] == "sync")
        await sock.send({"type": "ping"})
        assert await sock.receive() == {"type": "pong"}  # the socket is still open
    contents = [e["message"]["content"] for e in sync["events"] if e["type"] == "message"]
    assert contents == [long_text]
    assert len(sock.parts) > 5
    assert all(len(json.dumps(p, separators=(",", ":"))) <= 4096 for p in sock.parts)


async def test_a_reload_mid_turn_shows_the_partial_reply_and_continues(
    worker, model_server, owner, conversation
):
    words = [f"w{i} " for i in range(30)]
    model_server.push(Script(chunks=words, delay=0.08))
    async with open_socket(owner, conversation.id) as first:
        await first.receive()
        await first.send({"type": "user_message", "text": "Count slowly"})
        await first.receive_until(lambda f: f["type"] == "delta")
    await asyncio.sleep(0.8)  # the first tab is gone; the worker goes on

    message = await database_sync_to_async(
        lambda: Message.objects.get(conversation=conversation, role="assistant")
    )()
    assert message.status == "streaming"
    assert message.content, "partial text must be flushed while streaming"

    async with open_socket(owner, conversation.id) as second:
        await second.receive()
        await second.send({"type": "resume", "after_seq": 0})
        sync = await second.receive_until(lambda f: f["type"] == "sync")
        snapshot = next(
            e
            for e in sync["events"]
            if e["type"] == "message" and e["message"]["role"] == "assistant"
        )
        text = snapshot["message"]["content"]
        await second.turn_finished(10)
        for delta in (f for f in second.frames if f["type"] == "delta"):
            if delta["offset"] + len(delta["text"]) > len(text):
                assert delta["offset"] <= len(text), "a gap between snapshot and deltas"
                text += delta["text"][len(text) - delta["offset"] :]
    assert text == "".join(words)


async def test_a_second_message_during_a_turn_is_refused(worker, model_server, owner, conversation):
    model_server.push(Script(chunks=["slow "] * 15, delay=0.1))
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await sock.send({"type": "user_message", "text": "first"})
        await sock.receive_until(lambda f: f["type"] == "delta")
        await sock.send({"type": "user_message", "text": "second"})
        refused = await sock.receive_until(lambda f: f["type"] == "error")
        assert refused["code"] == "turn_in_progress"
        assert refused["reply_to"] == "user_message"
        await sock.turn_finished()
    contents = await database_sync_to_async(
        lambda: list(Message.objects.filter(role="user").values_list("content", flat=True))
    )()
    assert contents == ["first"]


async def test_stop_ends_generation_promptly(worker, model_server, owner, conversation):
    model_server.push(Script(chunks=["tick "] * 200, delay=0.05))
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await sock.send({"type": "user_message", "text": "Talk forever"})
        await sock.receive_until(lambda f: f["type"] == "delta")
        pressed = time.monotonic()
        await sock.send({"type": "stop"})
        finished = await sock.turn_finished(5)
        elapsed = time.monotonic() - pressed
    assert finished["turn"]["status"] == "stopped"
    assert elapsed < 1.5
    reply = await database_sync_to_async(lambda: Message.objects.get(role="assistant"))()
    assert reply.status == "stopped"
    assert reply.content.startswith("tick ") and len(reply.content) < 200 * 5


FAILURES = [
    pytest.param(Script(status=500), "model_server_error", id="http-500"),
    pytest.param(
        Script(text="one two three four", stall_after=2, stall_seconds=8),
        "model_timeout",
        id="stall",
    ),
    pytest.param(
        Script(text="one two three four", malformed_after=2), "model_bad_stream", id="malformed"
    ),
    pytest.param(Script(text="one two three four", drop_after=2), "model_bad_stream", id="dropped"),
    pytest.param(None, "model_unreachable", id="down"),
]


@pytest.mark.parametrize(("script", "code"), FAILURES)
async def test_a_failing_model_gives_a_clear_error_and_retry_works(
    worker, model_server, owner, conversation, script, code
):
    if script is None:
        model_server.pause()
    else:
        model_server.push(script)
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        started = time.monotonic()
        failed = await send_and_finish(sock, "Hello?")
        assert time.monotonic() - started < 2 + 3  # the read timeout is 2 s in tests
        assert failed["turn"]["status"] == "failed"
        assert failed["turn"]["error_code"] == code
        assert failed["turn"]["error"]

        if script is None:
            model_server.resume()
        model_server.push(Script(text="Back again."))
        await sock.send({"type": "retry", "turn_id": failed["turn"]["id"]})
        retried = await sock.turn_finished()
        assert retried["turn"]["status"] == "done"

    rows = await database_sync_to_async(
        lambda: list(Message.objects.order_by("id").values_list("role", "status", "content"))
    )()
    assert rows[0] == ("user", "complete", "Hello?")
    assert rows[-1] == ("assistant", "complete", "Back again.")
    statuses = await database_sync_to_async(
        lambda: list(Turn.objects.order_by("id").values_list("status", flat=True))
    )()
    assert statuses == ["failed", "done"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{oops", "bad_frame"),
        ('{"type": "nope"}', "bad_frame"),
        ('{"type": "user_message"}', "bad_frame"),
        ('{"type": "resume", "after_seq": "x"}', "bad_frame"),
        ("x" * 300_000, "frame_too_large"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    owner, conversation, frame, code
):
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await sock.send(frame)
        error = await sock.receive()
        assert error["type"] == "error" and error["code"] == code and error["message"]
        await sock.send({"type": "ping"})
        assert await sock.receive() == {"type": "pong"}


async def test_binary_frames_are_refused_politely(owner, conversation):
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await sock.communicator.send_to(bytes_data=b"\x00\x01")
        error = await sock.receive()
        assert error["code"] == "bad_frame"
        await sock.send({"type": "ping"})
        assert await sock.receive() == {"type": "pong"}


async def test_strangers_cannot_connect(owner, other_user, conversation):
    async with open_socket(other_user, conversation.id) as sock:
        assert not sock.connected
    async with open_socket(None, conversation.id) as sock:
        assert not sock.connected
    async with open_socket(owner, conversation.id, origin="https://attacker.example") as sock:
        assert not sock.connected
    async with open_socket(owner, "00000000-0000-0000-0000-000000000000") as sock:
        assert not sock.connected


async def test_deleting_a_conversation_closes_its_sockets(owner, conversation):
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await database_sync_to_async(do_delete_conversation)(conversation)
        assert (await sock.receive())["type"] == "deleted"
        closed = await sock.communicator.receive_output(2)
        assert closed["type"] == "websocket.close"


# ---- a socket follows its session --------------------------------------------------


@asynccontextmanager
async def logged_in_socket(user, conversation_id):
    """A socket on a session a test Client holds, so the test can log it out."""
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", cookie.encode()),
    ]
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation_id}/", headers=headers
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert json.loads(await communicator.receive_from(5))["type"] == "hello"
    try:
        yield client, communicator
    finally:
        await communicator.disconnect()


async def assert_session_ended(communicator):
    frame = json.loads(await communicator.receive_from(5))
    assert frame["type"] == "error" and frame["code"] == "session_ended", frame
    assert "signed out" in frame["message"]
    assert await communicator.receive_output(5) == {"type": "websocket.close", "code": 4401}


def log_out(client):
    client.post("/accounts/logout/")


def change_password_quietly(client):
    # A bulk update sends no signal: the socket must notice on its next frame.
    User.objects.filter(pk=client.session["_auth_user_id"]).update(
        password=make_password("a new password")
    )


def deactivate_quietly(client):
    User.objects.filter(pk=client.session["_auth_user_id"]).update(is_active=False)


@pytest.mark.parametrize("end_session", [log_out, change_password_quietly, deactivate_quietly])
async def test_it_refuses_the_next_frame_once_the_session_ended(owner, conversation, end_session):
    async with logged_in_socket(owner, conversation.id) as (client, communicator):
        await communicator.send_to(text_data=json.dumps({"type": "ping"}))
        assert json.loads(await communicator.receive_from(5)) == {"type": "pong"}
        await database_sync_to_async(end_session)(client)
        await communicator.send_to(
            text_data=json.dumps({"type": "user_message", "text": "still here?", "client_id": "c"})
        )
        await assert_session_ended(communicator)
    assert not await database_sync_to_async(Message.objects.filter(content="still here?").exists)()


def change_password(client):
    user = User.objects.get(pk=client.session["_auth_user_id"])
    user.set_password("a new password")
    user.save()


def deactivate(client):
    user = User.objects.get(pk=client.session["_auth_user_id"])
    user.is_active = False
    user.save()


@pytest.mark.parametrize("end_session", [log_out, change_password, deactivate])
async def test_it_closes_the_socket_when_the_session_ends(owner, conversation, end_session):
    async with logged_in_socket(owner, conversation.id) as (client, communicator):
        await database_sync_to_async(end_session)(client)
        # No frame sent: the event itself closes the socket, in any web process.
        await assert_session_ended(communicator)


async def test_another_session_of_the_user_stays_open_after_a_logout(owner, conversation):
    async with (
        logged_in_socket(owner, conversation.id) as (_, communicator),
        logged_in_socket(owner, conversation.id) as (other, ended),
    ):
        await database_sync_to_async(log_out)(other)
        await assert_session_ended(ended)
        await communicator.send_to(text_data=json.dumps({"type": "ping"}))
        assert json.loads(await communicator.receive_from(5)) == {"type": "pong"}


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port on the same host
        "https://127.0.0.1",  # another scheme: the server is plain http
        "http://evil.example",
        "null",
    ],
)
async def test_it_refuses_a_socket_from_another_origin(owner, conversation, origin):
    async with open_socket(owner, conversation.id, origin=origin) as sock:
        assert not sock.connected


async def test_it_accepts_its_own_origin_and_trusted_ones(owner, conversation, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.org"]
    for origin in ("http://127.0.0.1", "https://chat.example.org"):
        async with open_socket(owner, conversation.id, origin=origin) as sock:
            assert sock.connected, origin
