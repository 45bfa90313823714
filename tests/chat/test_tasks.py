"""The Celery tasks: a turn is sent by the name its task is registered under, and
the sweep enqueues again the turns whose task was lost."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from chat import tasks
from chat.actions import messages
from chat.models import Turn
from codeact_web.celery import app
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_turn_is_sent_under_the_name_of_its_task():
    assert tasks.run_turn.name == messages.RUN_TURN
    assert messages.RUN_TURN in app.tasks  # registered under that name
    with mock.patch.object(app, "send_task") as send_task:
        messages.send_turn(42)
    send_task.assert_called_once_with("chat.tasks.run_turn", args=[42])


def test_the_sweep_task_enqueues_lost_turns_again(owner):
    with mock.patch("chat.actions.messages.send_turn"):
        _, lost = messages.do_send_user_message(ConversationFactory(owner=owner), "lost")
        messages.do_send_user_message(ConversationFactory(owner=owner), "fresh")
    Turn.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with mock.patch("chat.tasks.send_turn") as send:
        assert tasks.sweep_turns() == {"interrupted": 0, "requeued": 1}
    send.assert_called_once_with(lost.pk)


def _lost_turns(owner, count):
    with mock.patch("chat.actions.messages.send_turn"):
        lost = [
            messages.do_send_user_message(ConversationFactory(owner=owner), "lost")[1]
            for _ in range(count)
        ]
    Turn.objects.filter(pk__in=[t.pk for t in lost]).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    return lost


def test_a_lost_turn_is_sent_again_once_per_period_not_at_every_sweep(owner):
    (lost,) = _lost_turns(owner, 1)
    with mock.patch("chat.tasks.send_turn") as send:
        for _ in range(5):  # beat sweeps every 10 s; the workers stay down meanwhile
            tasks.sweep_turns()
    send.assert_called_once_with(lost.pk)
    # One period later it is sent once more.
    Turn.objects.filter(pk=lost.pk).update(requeued_at=timezone.now() - timedelta(minutes=1))
    with mock.patch("chat.tasks.send_turn") as send:
        tasks.sweep_turns()
        tasks.sweep_turns()
    send.assert_called_once_with(lost.pk)


def test_a_sweep_sends_a_bounded_batch_oldest_first(owner, settings):
    settings.CODEACT_SWEEP_REQUEUE_BATCH = 2
    lost = _lost_turns(owner, 3)
    with mock.patch("chat.tasks.send_turn") as send:
        assert tasks.sweep_turns()["requeued"] == 2
        assert tasks.sweep_turns()["requeued"] == 1
    assert [c.args[0] for c in send.call_args_list] == [t.pk for t in lost]
