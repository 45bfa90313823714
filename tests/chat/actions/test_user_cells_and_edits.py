"""Cells the user runs, editing the last message and regenerating: what is stored,
superseded, refused and announced."""

from __future__ import annotations

import pytest

from chat.actions import messages, replies, turns
from chat.actions.errors import ActionError
from chat.models import Message, Turn
from chat.serialize import events_after

pytestmark = pytest.mark.django_db(transaction=True)


def _answer(turn: Turn, text: str) -> Message:
    """Finish a turn the way the worker does: claim it, then a final reply."""
    claim = turns.claim_turn(turn.pk)
    assert claim is not None and claim.first_reply is not None
    replies.do_finish_reply(claim.first_reply, text, Message.Status.COMPLETE, None, final=True)
    turns.do_finish_turn(claim.turn, Turn.Status.DONE)
    return claim.first_reply


def test_a_user_cell_is_a_user_message_and_a_queued_cell_turn(conversation, no_worker):
    message, turn = messages.do_run_user_cell(conversation, "\nx = 1\nprint(x)\n\n")
    assert message.role == Message.Role.USER and message.code == Message.CELL
    assert message.content == "x = 1\nprint(x)"
    assert turn.kind == Turn.Kind.CELL and turn.status == Turn.Status.QUEUED
    no_worker.assert_called_once_with(turn.pk)
    events = events_after(conversation, 0)
    assert [e["type"] for e in events] == ["message", "turn"]
    assert events[0]["message"]["cell"] is True
    conversation.refresh_from_db()
    assert conversation.title == "New conversation"  # a cell does not name it


def test_the_first_question_after_a_cell_still_names_the_conversation(conversation):
    _, cell = messages.do_run_user_cell(conversation, "x = 1")
    turns.do_finish_turn(turns.claim_turn(cell.pk).turn, Turn.Status.DONE)  # type: ignore[union-attr]
    messages.do_send_user_message(conversation, "What is x?")
    conversation.refresh_from_db()
    assert conversation.title == "What is x?"


def test_a_cell_turn_is_claimed_without_a_reply_and_one_number(conversation):
    _, turn = messages.do_run_user_cell(conversation, "print(1)")
    conversation.refresh_from_db()
    before = conversation.last_seq
    claim = turns.claim_turn(turn.pk)
    assert claim is not None and claim.first_reply is None
    assert claim.turn.status == Turn.Status.RUNNING
    conversation.refresh_from_db()
    assert conversation.last_seq == before + 1 == claim.turn.seq
    assert not conversation.messages.filter(role=Message.Role.ASSISTANT).exists()


def test_an_answer_turn_is_still_claimed_with_its_first_reply(conversation):
    _, turn = messages.do_send_user_message(conversation, "hello")
    claim = turns.claim_turn(turn.pk)
    assert claim is not None and claim.first_reply is not None
    assert claim.first_reply.seq == claim.turn.seq + 1


def test_a_cell_is_refused_while_the_assistant_answers(conversation, no_worker):
    messages.do_send_user_message(conversation, "first")
    with pytest.raises(ActionError) as refused:
        messages.do_run_user_cell(conversation, "print(1)")
    assert refused.value.code == "turn_in_progress"
    assert "finished answering" in refused.value.message
    assert not conversation.messages.filter(code=Message.CELL).exists()
    assert no_worker.call_count == 1


def test_empty_and_oversized_cells_are_refused(conversation, settings):
    settings.CODEACT_MAX_MESSAGE_CHARS = 10
    with pytest.raises(ActionError, match="empty"):
        messages.do_run_user_cell(conversation, " \n ")
    with pytest.raises(ActionError, match="limit is 10"):
        messages.do_run_user_cell(conversation, "x" * 11)
    assert not conversation.messages.exists()


def test_editing_the_last_message_supersedes_it_and_its_answer(conversation, no_worker):
    question, turn = messages.do_send_user_message(conversation, "What is 2+2?")
    answer = _answer(turn, "5")
    conversation.refresh_from_db()
    seen = conversation.last_seq
    new, new_turn = messages.do_resend(conversation, question.pk, "What is 2+3?")
    question.refresh_from_db()
    answer.refresh_from_db()
    assert question.superseded and answer.superseded
    assert new.content == "What is 2+3?" and new.pk > answer.pk and not new.superseded
    assert new_turn.user_message_id == new.pk and new_turn.status == Turn.Status.QUEUED
    events = events_after(conversation, seen)
    changed = {e["message"]["id"]: e["message"] for e in events if e["type"] == "message"}
    assert changed[question.pk]["superseded"] and changed[answer.pk]["superseded"]
    assert not changed[new.pk]["superseded"]


def test_regenerate_asks_the_same_question_again(conversation):
    question, turn = messages.do_send_user_message(conversation, "Tell me a number")
    answer = _answer(turn, "7")
    again, new_turn = messages.do_resend(conversation, question.pk)
    answer.refresh_from_db()
    assert answer.superseded
    assert again.content == "Tell me a number" and again.pk != question.pk
    assert new_turn.kind == Turn.Kind.ANSWER


def test_cells_run_after_the_answer_are_kept_when_it_is_regenerated(conversation):
    question, turn = messages.do_send_user_message(conversation, "Load the data")
    _answer(turn, "Loaded.")
    cell, cell_turn = messages.do_run_user_cell(conversation, "df = 1")
    turns.do_finish_turn(turns.claim_turn(cell_turn.pk).turn, Turn.Status.DONE)  # type: ignore[union-attr]
    again, _ = messages.do_resend(conversation, question.pk)
    cell.refresh_from_db()
    assert not cell.superseded
    assert cell.pk < again.pk  # the model sees the cell before the question asked anew


def test_only_the_last_question_can_be_edited(conversation):
    first, turn = messages.do_send_user_message(conversation, "one")
    _answer(turn, "1")
    _, turn = messages.do_send_user_message(conversation, "two")
    _answer(turn, "2")
    with pytest.raises(ActionError) as refused:
        messages.do_resend(conversation, first.pk, "uno")
    assert refused.value.code == "not_editable"
    assert not conversation.messages.filter(superseded_at__isnull=False).exists()


def test_editing_is_refused_while_the_answer_runs_and_nothing_changes(conversation):
    question, _ = messages.do_send_user_message(conversation, "slow question")
    with pytest.raises(ActionError) as refused:
        messages.do_resend(conversation, question.pk, "another")
    assert refused.value.code == "turn_in_progress"
    assert conversation.messages.count() == 1
    assert not conversation.messages.filter(superseded_at__isnull=False).exists()


def test_an_empty_edit_is_refused(conversation):
    question, turn = messages.do_send_user_message(conversation, "hello")
    _answer(turn, "hi")
    with pytest.raises(ActionError, match="empty"):
        messages.do_resend(conversation, question.pk, "   ")
