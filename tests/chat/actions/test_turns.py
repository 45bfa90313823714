"""Claiming, interrupting and sweeping turns: a turn runs at most once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.actions import executions, messages, replies, turns
from chat.models import Execution, Message, Turn
from chat.serialize import events_after
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_lets_only_one_claim_win(conversation):
    _, turn = messages.do_send_user_message(conversation, "hello")
    first = turns.claim_turn(turn.pk)
    second = turns.claim_turn(turn.pk)
    assert first is not None and first.turn.status == Turn.Status.RUNNING
    assert first.turn.lease_until > timezone.now()
    assert first.first_reply.status == Message.Status.STREAMING
    assert second is None


def test_it_interrupts_a_turn_whose_lease_expired_instead_of_rerunning_it(conversation):
    _, turn = messages.do_send_user_message(conversation, "hello")
    claimed = turns.claim_turn(turn.pk)
    assert claimed is not None
    reply = replies.do_start_reply(claimed.turn)
    replies.flush_reply(reply, "partial answer")
    Turn.objects.filter(pk=turn.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert turns.claim_turn(turn.pk) is None  # a redelivered task

    turn.refresh_from_db()
    reply.refresh_from_db()
    assert turn.status == Turn.Status.INTERRUPTED
    assert turn.error_code == "worker_lost"
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content == "partial answer"


def test_the_sweep_interrupts_expired_turns_and_lists_lost_ones(conversation, owner):
    _, running = messages.do_send_user_message(conversation, "one")
    turns.claim_turn(running.pk)
    Turn.objects.filter(pk=running.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    other = ConversationFactory(owner=owner)
    _, queued = messages.do_send_user_message(other, "two")
    Turn.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    messages.do_send_user_message(ConversationFactory(owner=owner), "three")  # not lost yet

    assert turns.do_sweep_turns() == turns.Sweep(interrupted=1, requeue=[queued.pk])
    running.refresh_from_db()
    assert running.status == Turn.Status.INTERRUPTED


def test_an_interrupted_turn_marks_its_running_code_as_lost(conversation):
    _message, turn = messages.do_send_user_message(conversation, "run it")
    claimed = turns.claim_turn(turn.pk)
    assert claimed is not None
    turn, reply = claimed.turn, claimed.first_reply
    execution = executions.do_start_execution(turn, reply, "import time; time.sleep(99)", {})
    Turn.objects.filter(pk=turn.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert turns.do_sweep_turns().interrupted == 1
    execution.refresh_from_db()
    assert execution.status == Execution.Status.LOST
    assert "not run again" in execution.detail
    assert execution.finished_at is not None
    kinds = [e["type"] for e in events_after(conversation, 0)]
    assert kinds.count("execution") == 1  # one row, announced at its latest state
