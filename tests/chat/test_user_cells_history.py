"""Cells the user ran and superseded answers, as the model is told of them (the
next prompt and the training record) and as the exports keep them."""

from __future__ import annotations

import itertools
import json

import nbformat
import pytest
from django.utils import timezone

from chat import exports
from chat.agent import codeact
from chat.history import history_for
from chat.models import Execution, Message, Turn
from review.datasets import check_training_record, conversation_record, training_record
from tests.factories import analysis_conversation

pytestmark = pytest.mark.django_db


def _user_cell(conversation, code: str, printed: str, status: str = "ok") -> Message:
    message = Message.objects.create(
        conversation=conversation, role="user", content=code, code=Message.CELL
    )
    turn = Turn.objects.create(
        conversation=conversation, user_message=message, kind=Turn.Kind.CELL, status="done"
    )
    Execution.objects.create(
        conversation=conversation,
        turn=turn,
        message=message,
        number=conversation.executions.count() + 1,
        code=code,
        origin=Execution.Origin.USER,
        status=status,
        observation=f"{codeact.OBSERVATION_PREFIX}{printed}",
    )
    return message


def _ask(conversation, text: str) -> Turn:
    question = Message.objects.create(conversation=conversation, role="user", content=text)
    return Turn.objects.create(conversation=conversation, user_message=question)


def test_the_next_prompt_carries_the_users_cell_and_its_output(owner):
    conversation = analysis_conversation(owner)
    _user_cell(conversation, "total = 45\nprint(total)", "45")
    prompt = history_for(_ask(conversation, "What is total?"))
    last = prompt[-1]
    assert last["role"] == "user"  # the cell and the question, joined: roles alternate
    assert last["content"] == (
        codeact.user_cell_text("total = 45\nprint(total)", "Execution Output:\n45")
        + "\n\nWhat is total?"
    )
    assert "```python\ntotal = 45\nprint(total)\n```" in last["content"]
    roles = [m["role"] for m in prompt]
    assert all(a != b for a, b in itertools.pairwise(roles))


def test_a_cell_that_never_started_is_not_sent_as_a_question(owner):
    conversation = analysis_conversation(owner)
    Message.objects.create(conversation=conversation, role="user", content="x=1", code="cell")
    prompt = history_for(_ask(conversation, "Next?"))
    assert "x=1" not in json.dumps(prompt)


def test_superseded_questions_and_answers_are_not_sent(owner):
    conversation = analysis_conversation(owner)
    Message.objects.filter(conversation=conversation).update(superseded_at=timezone.now())
    prompt = history_for(_ask(conversation, "Plot it, in red"))
    assert prompt == [{"role": "user", "content": "Plot it, in red"}]


def test_the_training_record_has_the_cell_as_the_users_step(owner):
    conversation = analysis_conversation(owner)
    _user_cell(conversation, "print(2 + 2)", "4")
    turn = _ask(conversation, "Double it")
    Turn.objects.filter(pk=turn.pk).update(status="done")
    Message.objects.create(
        conversation=conversation, turn=turn, role="assistant", content="8", final=True
    )
    record = training_record(conversation)
    assert record is not None
    check_training_record(record)
    told = record["conversations"][-2]["content"]
    assert told.startswith("I ran this code") and told.endswith("Double it")
    assert record["conversations"][-1]["content"] == "8"


def test_superseded_turns_are_left_out_of_the_training_record(owner):
    conversation = analysis_conversation(owner)
    turn = _ask(conversation, "Wrong question")
    Turn.objects.filter(pk=turn.pk).update(status="done")
    Message.objects.create(
        conversation=conversation, turn=turn, role="assistant", content="Wrong answer", final=True
    )
    Message.objects.filter(pk=turn.user_message_id).update(superseded_at=timezone.now())
    Message.objects.filter(turn=turn).update(superseded_at=timezone.now())
    record = training_record(conversation)
    assert record is not None
    assert "Wrong" not in json.dumps(record)


def test_exports_keep_the_users_cells_distinct(owner):
    conversation = analysis_conversation(owner)
    _user_cell(conversation, "print('mine')", "mine")

    nb = exports.notebook(conversation)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.metadata["codeact"]["origin"] for c in code_cells] == ["agent", "user"]
    assert nb.cells[-2].source == "**You ran this cell:**"
    assert nb.cells[-1].source == "print('mine')"

    markdown = exports.markdown(conversation)
    assert "**You ran this cell:**\n\n```python\nprint('mine')\n```" in markdown

    record = conversation_record(conversation)
    assert [e["origin"] for e in record["executions"]] == ["agent", "user"]
    assert [t["kind"] for t in record["turns"]] == ["answer", "cell"]


def test_exports_mark_superseded_answers(owner):
    conversation = analysis_conversation(owner)
    Message.objects.filter(conversation=conversation).update(superseded_at=timezone.now())
    markdown = exports.markdown(conversation)
    assert "earlier version, replaced; not sent to the model" in markdown
    record = conversation_record(conversation)
    assert all(m["superseded_at"] for m in record["messages"])
