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
