"""Models that write code in other ways, end to end: the real worker runs the
scripted model's python fence or function call in a real sandbox, sends the
output back in the model's own shape, and stores each reply's format."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.agent.formats import get_format
from chat.models import Execution, Message, Output
from chat.serialize import message_data
from tests.conftest import open_socket
from tests.factories import ConversationFactory
from tests.support.scripted_model import Script

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.usefixtures("remove_sandboxes"),
]

db = database_sync_to_async


async def ask(sock, text, timeout=60.0):
    await sock.send({"type": "user_message", "text": text})
    return await sock.turn_finished(timeout)


def rows(conversation):
    replies = list(Message.objects.filter(conversation=conversation, role="assistant"))
    executions = list(Execution.objects.filter(conversation=conversation).order_by("id"))
    outputs = list(Output.objects.filter(conversation=conversation).order_by("id"))
    notices = list(Message.objects.filter(conversation=conversation, role="notice"))
    return replies, executions, outputs, notices


async def test_a_fence_model_runs_its_python_block_then_answers(worker, model_server, owner):
    conversation = await db(ConversationFactory)(owner=owner, model="fenced")
    model_server.push(
        # the server does not stop after the block: what follows is invented and dropped
        Script(
            text="Let me compute.\n```python\nprint(sum(range(10)))\n```\n"
            "Execution Output:\n999\nSo it is 999.",
            delay=0.01,
        ),
        Script(text="The sum is 45."),
    )
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Sum 0..9 in Python")
    assert finished["turn"]["status"] == "done"
    replies, (execution,), outputs, notices = await db(rows)(conversation)
    assert execution.code == "print(sum(range(10)))" and execution.status == "ok"
    assert [o.text for o in outputs] == ["45\n"]
    assert [(r.content, r.final, r.action_format) for r in replies] == [
        ("Let me compute.\n```python\nprint(sum(range(10)))\n```", False, "fence"),
        ("The sum is 45.", True, "fence"),
    ]
    assert notices == []
    # the page shows the step without its code (the cell shows it)
    assert (await db(message_data)(replies[0]))["html"] == "<p>Let me compute.</p>\n"

    first, second = model_server.requests
    assert "stop" not in first and "tools" not in first
    system = first["messages"][0]["content"]
    assert system == get_format("fence").system_prompt()
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": replies[0].content},
        {"role": "user", "content": "Execution Output:\n45"},
    ]


async def test_a_tool_model_calls_python_then_answers(worker, model_server, owner):
    conversation = await db(ConversationFactory)(owner=owner, model="tools")
    model_server.push(
        Script(text="Computing.", tool_code="import math\nprint(math.factorial(5))", pieces=6),
        Script(text="5! is 120."),
    )
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "What is 5 factorial?")
        assert finished["turn"]["status"] == "done"
        model_server.push(Script(text="Still 120."))
        finished = await ask(sock, "And again?")
    assert finished["turn"]["status"] == "done"
    replies, (execution,), outputs, _ = await db(rows)(conversation)
    assert execution.code == "import math\nprint(math.factorial(5))"
    assert [o.text for o in outputs] == ["120\n"]
    assert [(r.content, r.final, r.action_format) for r in replies] == [
        ("Computing.", False, "tool"),
        ("5! is 120.", True, "tool"),
        ("Still 120.", True, "tool"),
    ]

    first, second, third = model_server.requests
    assert first["tools"] == list(get_format("tool").tools) and first["tool_choice"] == "auto"
    call = {
        "role": "assistant",
        "content": "Computing.",
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {
                    "name": "python",
                    "arguments": '{"code": "import math\\nprint(math.factorial(5))"}',
                },
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "call00001", "content": "Execution Output:\n120"}
    assert second["messages"][-2:] == [call, result]
    # the next turn's history, rebuilt from the rows, replays the call the same way
    assert third["messages"][1:] == [
        {"role": "user", "content": "What is 5 factorial?"},
        call,
        result,
        {"role": "assistant", "content": "5! is 120."},
        {"role": "user", "content": "And again?"},
    ]


async def test_a_tool_call_that_cannot_be_read_runs_nothing(worker, model_server, owner):
    conversation = await db(ConversationFactory)(owner=owner, model="tools")
    model_server.push(Script(text="Trying.", tool_arguments='{"code": print(1)}'))
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Print 1")
    assert finished["turn"]["status"] == "done"
    replies, executions, _, notices = await db(rows)(conversation)
    assert executions == []
    assert [(r.content, r.final) for r in replies] == [("Trying.", True)]
    (notice,) = notices
    assert notice.code == "malformed_action"
    assert "could not be read" in notice.content
