"""The stop watch: one thread per worker process tells each running turn of its own Stop."""

from __future__ import annotations

import time
from unittest import mock

import pytest

from chat.actions import messages, turns
from chat.models import Turn
from chat.worker.stop_watch import StopWatch
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_worker():
    """The turns are claimed here, not by a worker: nothing is sent anywhere."""
    with mock.patch("chat.actions.messages.send_turn") as send:
        yield send


def test_the_stop_watch_tells_each_running_turn_of_its_own_stop(owner):
    watch = StopWatch(interval=0.05)
    running_turns = []
    for _ in range(2):
        _, turn = messages.do_send_user_message(ConversationFactory(owner=owner), "hello")
        claimed = turns.claim_turn(turn.pk)
        assert claimed is not None
        running_turns.append(claimed.turn)
    stopped, running = (watch.watch(t.pk).stop for t in running_turns)
    messages.do_request_stop(running_turns[0].conversation)
    assert stopped.wait(10)
    time.sleep(0.2)  # a few more rounds of the watch
    assert not running.is_set()
    watch.forget(running_turns[0].pk)
    watch.forget(running_turns[1].pk)
    ids = [t.pk for t in running_turns]
    assert turns.stopped_turns(ids) == {running_turns[0].pk}


def claimed_turn(owner):
    _, turn = messages.do_send_user_message(ConversationFactory(owner=owner), "hello")
    claimed = turns.claim_turn(turn.pk)
    assert claimed is not None
    return claimed.turn


def test_only_a_turn_the_sweeper_closed_is_reported_as_lost(owner, settings, caplog):
    """A turn that just ended by itself is still watched for a moment (its thread
    forgets it after its last write): that is no lost lease worth a warning."""
    settings.CODEACT_TURN_LEASE_SECONDS = 3  # renewals every second
    ended, taken = claimed_turn(owner), claimed_turn(owner)
    watch = StopWatch(interval=0.05)
    ended_watch, taken_watch = watch.watch(ended.pk), watch.watch(taken.pk)
    turns.do_finish_turn(ended, "done")
    Turn.objects.filter(pk=taken.pk).update(status="interrupted")  # the sweeper's doing
    assert taken_watch.lost.wait(5)
    assert ended_watch.lost.wait(5)  # its thread stops, quietly
    watch.forget(ended.pk)
    watch.forget(taken.pk)
    warnings = [r.getMessage() for r in caplog.records if "lease is gone" in r.getMessage()]
    assert warnings == [f"turn {taken.pk}: the lease is gone; the turn stops here"]
