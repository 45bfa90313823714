"""The turn lease is a fence: a worker whose lease ran out (and whose turn the
sweeper interrupted) can write nothing more to the conversation, and the stop
watch keeps the leases of live turns fresh while they block (sandbox start,
file capture), without keeping a stalled one alive."""

from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from chat.actions import executions, messages, replies, turns
from chat.lease import LeaseLost, fenced
from chat.models import Message, Turn
from chat.worker.stop_watch import StopWatch
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_worker():
    with mock.patch("chat.actions.messages.send_turn") as send:
        yield send


def running_turn(owner) -> Turn:
    _, turn = messages.do_send_user_message(ConversationFactory(owner=owner), "hello")
    claim = turns.claim_turn(turn.pk)
    assert claim is not None
    return claim.turn


def lapse(turn: Turn) -> None:
    Turn.objects.filter(pk=turn.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def test_it_lets_the_lease_holder_write(owner):
    turn = running_turn(owner)
    with fenced(turn):
        notice = replies.do_add_notice(turn, "limit", "still mine")
    assert Message.objects.filter(pk=notice.pk).exists()


def test_it_refuses_every_write_once_the_sweeper_took_the_turn(owner):
    turn = running_turn(owner)
    message = replies.do_start_reply(turn)
    lapse(turn)
    assert turns.do_sweep_turns().interrupted == 1
    seq_before = Turn.objects.get(pk=turn.pk).conversation.last_seq
    with fenced(turn):
        with pytest.raises(LeaseLost):
            replies.do_add_notice(turn, "late", "written after the lease ran out")
        with pytest.raises(LeaseLost):
            replies.do_finish_reply(message, "late text", Message.Status.COMPLETE)
        with pytest.raises(LeaseLost):
            executions.do_start_execution(turn, message, "print(1)", {})
        with pytest.raises(LeaseLost):
            turns.do_finish_turn(turn, Turn.Status.DONE)
    assert not Message.objects.filter(code="late").exists()
    assert Message.objects.get(pk=message.pk).status == Message.Status.INTERRUPTED
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.INTERRUPTED
    assert Turn.objects.get(pk=turn.pk).conversation.last_seq == seq_before


def test_it_does_not_interrupt_a_lease_renewed_after_the_sweep_looked(owner):
    turn = running_turn(owner)
    lapse(turn)
    expired = Turn.objects.get(pk=turn.pk)
    assert turns.renew_leases([turn.pk]) == {turn.pk}  # renewed between list and lock
    turns.do_interrupt_turn(expired)
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.RUNNING


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_watch_renews_a_busy_turns_lease_without_its_thread(owner, settings):
    settings.CODEACT_TURN_LEASE_SECONDS = 2
    turn = running_turn(owner)
    watch = StopWatch(interval=0.05)
    watched = watch.watch(turn.pk)  # the turn's thread now blocks (a sandbox start)
    first = Turn.objects.get(pk=turn.pk).lease_until
    try:
        assert wait_for(lambda: Turn.objects.get(pk=turn.pk).lease_until > first)
        assert not watched.lost.is_set()
    finally:
        watch.forget(turn.pk)


def test_the_watch_lets_a_stalled_turns_lease_run_out(owner, settings):
    settings.CODEACT_TURN_LEASE_SECONDS = 2
    settings.CODEACT_TURN_STALL_SECONDS = 0.2
    turn = running_turn(owner)
    watch = StopWatch(interval=0.05)
    watch.watch(turn.pk)
    try:
        time.sleep(0.3)  # no sign of life from the turn's thread past the stall limit
        lease = Turn.objects.get(pk=turn.pk).lease_until
        time.sleep(1.0)  # two renewal periods
        assert Turn.objects.get(pk=turn.pk).lease_until == lease
    finally:
        watch.forget(turn.pk)


def test_the_watch_tells_a_turn_it_lost_its_lease(owner, settings):
    settings.CODEACT_TURN_LEASE_SECONDS = 2
    turn = running_turn(owner)
    watch = StopWatch(interval=0.05)
    watched = watch.watch(turn.pk)
    try:
        with transaction.atomic():  # the watch's renewal waits, then finds the turn closed
            Turn.objects.select_for_update().filter(pk=turn.pk).update(
                lease_until=timezone.now() - timedelta(seconds=1)
            )
            turns.do_interrupt_turn(Turn.objects.get(pk=turn.pk))
        assert watched.lost.wait(5)
        assert watched.stopped()
    finally:
        watch.forget(turn.pk)
