"""What the model saw, rebuilt from the rows: the worker's next prompt and the
training record are one rebuild, so they agree message for message."""

from __future__ import annotations

import hashlib

import pytest

from chat.agent import codeact
from chat.history import history_for, system_prompt_for
from chat.models import Execution, Message, Turn, WorkspaceFile
from review.datasets import training_record
from tests.factories import analysis_conversation

pytestmark = pytest.mark.django_db


def _ask(conversation, text: str) -> Turn:
    question = Message.objects.create(conversation=conversation, role="user", content=text)
    return Turn.objects.create(conversation=conversation, user_message=question)


def test_the_next_prompt_and_the_training_record_agree(owner):
    conversation = analysis_conversation(owner)
    record = training_record(conversation)
    assert record is not None
    turn = _ask(conversation, "And per quarter?")

    prompt = history_for(turn)

    assert prompt[:-1] == record["conversations"][1:]
    assert prompt[-1] == {"role": "user", "content": "And per quarter?"}
    assert prompt[2]["content"].startswith(codeact.OBSERVATION_PREFIX)


def test_code_that_never_finished_is_told_as_such(owner):
    conversation = analysis_conversation(owner)
    Execution.objects.filter(conversation=conversation).update(
        status=Execution.Status.FAILED, observation="", detail="no sandbox was free"
    )
    prompt = history_for(_ask(conversation, "Again?"))
    told = prompt[2]["content"]
    assert told == f"{codeact.OBSERVATION_PREFIX}[The code was not run: no sandbox was free]"


def test_the_prompt_lists_the_files_that_existed_then(owner):
    conversation = analysis_conversation(owner)
    data = b"month,total\n"
    file = WorkspaceFile.objects.create(
        conversation=conversation,
        path="sales.csv",
        origin=WorkspaceFile.Origin.UPLOAD,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content=data,
    )
    assert "/workspace/sales.csv (12 bytes, uploaded by the user)" in system_prompt_for(
        conversation.id
    )
    before = system_prompt_for(conversation.id, as_of=file.created_at.replace(year=2000))
    assert before == codeact.SYSTEM_PROMPT
