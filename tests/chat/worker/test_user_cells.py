"""Cells the user runs, end to end: the real worker runs them in the same sandbox
and kernel as the assistant's code, streams and stores them, and the model is
told of them with the next question."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.models import Execution, Message, Output, Turn
from tests.conftest import open_socket
from tests.factories import ConversationFactory
from tests.support.scripted_model import Script

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.usefixtures("remove_sandboxes"),
]

db = database_sync_to_async


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner, title="Cells")


def code(source: str) -> Script:
    return Script(text=f"<execute>\n{source}\n</execute>")


async def run_cell(sock, source, timeout=60.0):
    await sock.send({"type": "run_cell", "code": source, "client_id": "c1"})
    return await sock.turn_finished(timeout)


def executions_of(conversation):
    return list(Execution.objects.filter(conversation=conversation).order_by("id"))


def texts_of(execution):
    return [o.text for o in Output.objects.filter(execution=execution).order_by("index")]


async def test_a_user_cell_shares_the_kernel_and_the_model_is_told(
    worker, model_server, owner, conversation
):
    model_server.push(code("rate = 0.07"), Script(text="Set the rate."))
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()  # hello
        await sock.send({"type": "user_message", "text": "Set a rate"})
        assert (await sock.turn_finished(60))["turn"]["status"] == "done"

        finished = await run_cell(sock, "print(round(rate * 100, 1))")
        assert finished["turn"]["status"] == "done" and finished["turn"]["kind"] == "cell"
        acks = [f for f in sock.frames if f["type"] == "ack"]
        assert acks[-1]["client_id"] == "c1"

        agent, mine = await db(executions_of)(conversation)
        assert (agent.origin, mine.origin) == ("agent", "user")
        assert mine.status == "ok" and await db(texts_of)(mine) == ["7.0\n"]
        assert mine.observation == "Execution Output:\n7.0"
        cell_message = await db(Message.objects.get)(pk=mine.message_id)
        assert (cell_message.role, cell_message.code) == ("user", Message.CELL)
        # No model was asked for the cell: still two requests.
        assert len(model_server.requests) == 2
        frames = [f["execution"] for f in sock.frames if f["type"] == "execution"]
        assert [(f["number"], f["origin"], f["status"]) for f in frames][-2:] == [
            (2, "user", "running"),
            (2, "user", "ok"),
        ]

        model_server.push(Script(text="You printed 7.0."))
        await sock.send({"type": "user_message", "text": "What did I print?"})
        assert (await sock.turn_finished(60))["turn"]["status"] == "done"
    last = model_server.requests[-1]["messages"][-1]
    assert last["role"] == "user"
    assert "```python\nprint(round(rate * 100, 1))\n```" in last["content"]
    assert "Execution Output:\n7.0" in last["content"]
    assert last["content"].endswith("What did I print?")


async def test_a_cell_is_refused_while_the_assistant_answers(
    worker, model_server, owner, conversation
):
    model_server.push(Script(text="slow " * 60, delay=0.05))
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await sock.send({"type": "user_message", "text": "Talk slowly"})
        await sock.receive_until(lambda f: f["type"] == "delta", 30)
        await sock.send({"type": "run_cell", "code": "print(1)"})
        error = await sock.receive_until(lambda f: f["type"] == "error", 10)
        assert error["code"] == "turn_in_progress" and error["reply_to"] == "run_cell"
        assert (await sock.turn_finished(60))["turn"]["status"] == "done"
    assert await db(executions_of)(conversation) == []


async def test_stop_interrupts_a_user_cell(worker, model_server, owner, conversation):
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await sock.send(
            {"type": "run_cell", "code": "import time\nprint('start', flush=True)\ntime.sleep(120)"}
        )
        await sock.receive_until(
            lambda f: f["type"] in ("output", "output_delta") and "start" in str(f), 90
        )
        await sock.send({"type": "stop"})
        finished = await sock.turn_finished(30)
    assert finished["turn"]["status"] == "stopped"
    (cell,) = await db(executions_of)(conversation)
    assert cell.status == "interrupted" and cell.origin == "user"
    assert "[The user stopped this execution.]" in cell.observation
    turn = await db(Turn.objects.get)(pk=finished["turn"]["id"])
    assert turn.kind == Turn.Kind.CELL
