"""Sending, retrying and stopping: what is stored, numbered, refused and announced."""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest
from django.db import connection, transaction

from chat.actions import messages, replies, turns
from chat.actions.errors import ActionError
from chat.models import Conversation, Turn
from chat.serialize import events_after

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_stores_the_message_and_a_queued_turn(conversation, no_worker):
    message, turn = messages.do_send_user_message(conversation, "  What is 2+2?  ")
    assert message.content == "What is 2+2?"
    assert turn.status == Turn.Status.QUEUED
    assert turn.user_message == message
    no_worker.assert_called_once_with(turn.pk)
    conversation.refresh_from_db()
    assert conversation.title == "What is 2+2?"
    assert conversation.last_seq == turn.seq


def test_it_numbers_every_change_in_order(conversation):
    message, turn = messages.do_send_user_message(conversation, "hello")
    assert message.seq < turn.seq
    events = events_after(conversation, 0)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert {e["type"] for e in events} == {"message", "turn", "conversation"}
    assert events_after(conversation, turn.seq) == []


def test_it_refuses_a_message_while_a_turn_runs(conversation, no_worker):
    messages.do_send_user_message(conversation, "first")
    with pytest.raises(ActionError) as refused:
        messages.do_send_user_message(conversation, "second")
    assert refused.value.code == "turn_in_progress"
    assert list(conversation.messages.values_list("content", flat=True)) == ["first"]
    assert no_worker.call_count == 1


def test_it_refuses_empty_and_oversized_messages(conversation, settings):
    settings.CODEACT_MAX_MESSAGE_CHARS = 10
    with pytest.raises(ActionError, match="empty"):
        messages.do_send_user_message(conversation, "   ")
    with pytest.raises(ActionError, match="limit is 10"):
        messages.do_send_user_message(conversation, "x" * 11)
    assert not conversation.messages.exists()


def test_it_retries_only_the_latest_finished_turn(conversation):
    _, turn = messages.do_send_user_message(conversation, "hello")
    with pytest.raises(ActionError, match="nothing to retry"):
        messages.do_retry_turn(conversation, turn.pk)
    claimed = turns.claim_turn(turn.pk)
    assert claimed is not None
    turns.do_finish_turn(claimed.turn, Turn.Status.FAILED, "x", "boom")
    retry = messages.do_retry_turn(conversation, turn.pk)
    assert retry.user_message_id == turn.user_message_id
    assert retry.status == Turn.Status.QUEUED
    with pytest.raises(ActionError, match="most recent"):
        messages.do_retry_turn(conversation, turn.pk)


def test_stop_ends_a_queued_turn_at_once_and_flags_a_running_one(conversation):
    _, turn = messages.do_send_user_message(conversation, "hello")
    messages.do_request_stop(conversation)
    turn.refresh_from_db()
    assert turn.status == Turn.Status.STOPPED

    _, turn = messages.do_send_user_message(conversation, "again")
    turns.claim_turn(turn.pk)
    messages.do_request_stop(conversation)
    turn.refresh_from_db()
    assert turn.status == Turn.Status.RUNNING and turn.stop_requested
    assert turns.stopped_turns([turn.pk]) == {turn.pk}


def test_a_stop_racing_a_claim_waits_instead_of_deadlocking(conversation):
    _, turn = messages.do_send_user_message(conversation, "hello")
    errors: list[Exception] = []

    def stop() -> None:
        try:
            messages.do_request_stop(conversation)
        except Exception as exc:  # a deadlock aborts one side after deadlock_timeout
            errors.append(exc)
        finally:
            connection.close()

    # A claim locks the conversation row first, then the turn; hold it between the two.
    with transaction.atomic():
        list(Conversation.objects.select_for_update().filter(pk=conversation.pk).values("pk"))
        stopper = threading.Thread(target=stop)
        stopper.start()
        time.sleep(0.5)  # let the stop reach its locks
        Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.RUNNING)
    stopper.join(10)
    assert errors == []
    turn.refresh_from_db()
    assert turn.status == Turn.Status.RUNNING and turn.stop_requested  # the worker stops it


def test_what_send_and_claim_publish_is_what_a_resync_returns(conversation):
    """The send and the claim each write in one statement and build the events from
    what it returned: those events must match the rows a reconnecting client reads."""
    published: list[dict] = []
    with mock.patch(
        "chat.broadcast.publish", side_effect=lambda _c, *events: published.extend(events)
    ):
        _, turn = messages.do_send_user_message(conversation, "first question")
        claimed = turns.claim_turn(turn.pk)
        assert claimed is not None
        replies.do_finish_reply(claimed.first_reply, "an answer", "complete", final=True)
        turns.do_finish_turn(claimed.turn, Turn.Status.DONE)
        _, turn = messages.do_send_user_message(conversation, "second question")
        turns.claim_turn(turn.pk)
    seqs = [e["seq"] for e in published]
    # first message: message, title, turn; claim: turn, reply; then one number per change
    assert seqs == list(range(1, len(published) + 1))
    kinds = [e["type"] for e in published[:5]]
    assert kinds == ["message", "conversation", "turn", "turn", "message"]
    latest = {(e["type"], _row_id(e)): e for e in published}
    assert sorted(latest.values(), key=lambda e: e["seq"]) == events_after(conversation, 0)
    conversation.refresh_from_db()
    assert conversation.last_seq == seqs[-1] and conversation.title == "first question"


def _row_id(event):
    body = event[event["type"]]
    return body["id"]


def test_a_refused_send_inside_a_transaction_leaves_it_usable(conversation):
    messages.do_send_user_message(conversation, "first")
    with transaction.atomic():
        with pytest.raises(ActionError):
            messages.do_send_user_message(conversation, "second")
        assert conversation.messages.count() == 1  # the transaction still works
