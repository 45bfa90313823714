"""Action formats outside the loop: the model's next prompt replays each step in
the model's own format, the page shows a reply without its action, and the
training export writes every step as CodeAct's `<execute>`."""

from __future__ import annotations

import json

import pytest

from chat.agent.formats import get_format
from chat.history import Step, history_for, model_messages, system_prompt_for
from chat.models import Conversation, Execution, Message, Turn
from chat.rendering import reply_ran_code, shown_text
from chat.serialize import message_data
from review.datasets import check_training_record, training_record
from tests.factories import ConversationFactory

QUESTION = "What is 2 + 2?"
OBSERVED = "Execution Output:\n4"
# One step that ran `print(2 + 2)`, as each format stores it.
STEPS = {
    "execute": "Let me compute.\n<execute>\nprint(2 + 2)\n</execute>",
    "fence": "Let me compute.\n```python\nprint(2 + 2)\n```",
    "tool": "Let me compute.",
}


def _conversation(owner, written: str) -> Conversation:
    """A finished turn: a question, a step in format `written` that ran code, an answer."""
    conversation = ConversationFactory(owner=owner)
    question = Message.objects.create(conversation=conversation, role="user", content=QUESTION)
    turn = Turn.objects.create(conversation=conversation, user_message=question, status="done")
    step = Message.objects.create(
        conversation=conversation,
        turn=turn,
        role="assistant",
        content=STEPS[written],
        action_format=written,
    )
    Execution.objects.create(
        conversation=conversation,
        turn=turn,
        message=step,
        number=1,
        code="print(2 + 2)",
        status="ok",
        observation=OBSERVED,
    )
    Message.objects.create(
        conversation=conversation,
        turn=turn,
        role="assistant",
        content="It is 4.",
        final=True,
        action_format=written,
    )
    return conversation


def _ask(conversation: Conversation, text: str) -> Turn:
    question = Message.objects.create(conversation=conversation, role="user", content=text)
    return Turn.objects.create(conversation=conversation, user_message=question)


TOOL_STEP = [
    {
        "role": "assistant",
        "content": "Let me compute.",
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "python", "arguments": '{"code": "print(2 + 2)"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call00001", "content": OBSERVED},
]


@pytest.mark.django_db
@pytest.mark.parametrize("written", ["execute", "fence", "tool"])
@pytest.mark.parametrize("model", ["execute", "fence", "tool"])
def test_the_next_prompt_replays_each_step_in_the_models_format(owner, written, model):
    conversation = _conversation(owner, written)
    prompt = history_for(_ask(conversation, "And 3 + 3?"), model)
    step = (
        TOOL_STEP
        if model == "tool"
        else [
            {"role": "assistant", "content": STEPS[model]},
            {"role": "user", "content": OBSERVED},
        ]
    )
    assert prompt == [
        {"role": "user", "content": QUESTION},
        *step,
        {"role": "assistant", "content": "It is 4."},
        {"role": "user", "content": "And 3 + 3?"},
    ]


@pytest.mark.django_db
def test_a_function_call_without_text_is_still_in_the_history(owner):
    conversation = _conversation(owner, "tool")
    Message.objects.filter(conversation=conversation, final=False, role="assistant").update(
        content=""
    )
    # a reply with neither text nor code (a failed start) stays out
    Message.objects.create(conversation=conversation, role="assistant", content="")
    prompt = history_for(_ask(conversation, "Again?"), "tool")
    assert prompt[1]["content"] is None and prompt[1]["tool_calls"]
    assert prompt[2]["role"] == "tool"
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool", "assistant", "user"]


def test_tool_call_ids_count_up_through_the_history():
    steps = [
        Step("user", "Q"),
        Step("assistant", "", OBSERVED, "ok", "", "x = 1", "tool"),
        Step("assistant", "", OBSERVED, "ok", "", "y = 2", "tool"),
        Step("assistant", "Done.", action_format="tool"),
    ]
    messages = model_messages(steps, "tool")
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == [
        "call00001",
        "call00002",
    ]
    assert model_messages(steps, "tool") == messages  # the same every time


def test_rows_from_before_formats_are_execute():
    steps = [Step("assistant", STEPS["execute"], OBSERVED, "ok", "", "print(2 + 2)", "")]
    assert model_messages(steps, "fence")[0] == {"role": "assistant", "content": STEPS["fence"]}


@pytest.mark.django_db
def test_the_system_prompt_is_the_formats():
    conversation = ConversationFactory()
    for name in ("execute", "fence", "tool"):
        assert system_prompt_for(conversation.id, action_format=name) == (
            get_format(name).system_prompt()
        )


@pytest.mark.django_db
@pytest.mark.parametrize("written", ["execute", "fence", "tool"])
def test_the_training_record_is_codeact_whatever_the_format(owner, written):
    conversation = _conversation(owner, written)
    if written == "tool":  # a call with no text at all is kept too
        Message.objects.filter(conversation=conversation, final=False).update(content="")
    record = training_record(conversation)
    assert record is not None
    check_training_record(record)
    step = record["conversations"][2]
    expected = "<execute>\nprint(2 + 2)\n</execute>"
    if written != "tool":
        expected = "Let me compute.\n" + expected
    assert step == {"role": "assistant", "content": expected}
    assert record["conversations"][3] == {"role": "user", "content": OBSERVED}
    json.dumps(record)


@pytest.mark.parametrize(
    ("written", "content", "ran", "shown"),
    [
        ("execute", STEPS["execute"], True, "Let me compute."),
        ("", STEPS["execute"], True, "Let me compute."),  # before formats
        ("fence", STEPS["fence"], True, "Let me compute."),
        ("fence", "Run:\n```sh\nls\n```\n```python\nx = 1\n```", True, "Run:\n```sh\nls\n```"),
        # an answer's code blocks are its Markdown; so are a stopped reply's
        ("fence", "Use:\n```python\nsorted(xs)\n```", False, "Use:\n```python\nsorted(xs)\n```"),
        ("fence", "```python\nx = 1", False, "```python\nx = 1"),
        ("fence", "It is <solution>4</solution>.", False, "It is 4."),
        ("tool", "Let me compute.", True, "Let me compute."),
        ("tool", "", True, ""),
        ("tool", "An `<execute>` tag is text.", False, "An `<execute>` tag is text."),
    ],
)  # fmt: skip
def test_the_page_shows_a_reply_without_its_action(written, content, ran, shown):
    assert shown_text("assistant", content, written, ran) == shown
    assert shown_text("user", content, written, ran) == content


def test_a_reply_ran_code_when_it_is_a_complete_step():
    assert reply_ran_code(final=False, status="complete")
    assert not reply_ran_code(final=True, status="complete")  # the answer
    assert not reply_ran_code(final=False, status="stopped")
    assert not reply_ran_code(final=False, status="failed")
    assert not reply_ran_code(final=False, status="interrupted")


@pytest.mark.django_db
def test_the_page_gets_a_fenced_step_without_its_code(owner):
    conversation = _conversation(owner, "fence")
    step, answer = Message.objects.filter(conversation=conversation, role="assistant")
    data = message_data(step)
    assert data["content"] == STEPS["fence"]  # the stored text is whole
    assert data["html"] == "<p>Let me compute.</p>\n"
    assert "print" not in data["html"]
    assert message_data(answer)["html"] == "<p>It is 4.</p>\n"
