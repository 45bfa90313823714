import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection, transaction
from django.http import Http404
from django.utils import timezone

from chat import actions
from chat.models import Conversation, Message, Turn
from chat.serialize import events_after
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_worker():
    """These tests look at rows only: the task is not sent anywhere."""
    with mock.patch("chat.tasks.run_turn.delay") as delay:
        yield delay


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner, title="New conversation")


def test_it_stores_the_message_and_a_queued_turn(conversation, no_worker):
    message, turn = actions.do_send_user_message(conversation, "  What is 2+2?  ")
    assert message.content == "What is 2+2?"
    assert turn.status == Turn.Status.QUEUED
    assert turn.user_message == message
    no_worker.assert_called_once_with(turn.pk)
    conversation.refresh_from_db()
    assert conversation.title == "What is 2+2?"
    assert conversation.last_seq == turn.seq


def test_it_numbers_every_change_in_order(conversation):
    message, turn = actions.do_send_user_message(conversation, "hello")
    assert message.seq < turn.seq
    events = events_after(conversation, 0)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert {e["type"] for e in events} == {"message", "turn", "conversation"}
    assert events_after(conversation, turn.seq) == []


def test_it_refuses_a_message_while_a_turn_runs(conversation, no_worker):
    actions.do_send_user_message(conversation, "first")
    with pytest.raises(actions.ActionError) as refused:
        actions.do_send_user_message(conversation, "second")
    assert refused.value.code == "turn_in_progress"
    assert list(conversation.messages.values_list("content", flat=True)) == ["first"]
    assert no_worker.call_count == 1


def test_it_refuses_empty_and_oversized_messages(conversation, settings):
    settings.CODEACT_MAX_MESSAGE_CHARS = 10
    with pytest.raises(actions.ActionError, match="empty"):
        actions.do_send_user_message(conversation, "   ")
    with pytest.raises(actions.ActionError, match="limit is 10"):
        actions.do_send_user_message(conversation, "x" * 11)
    assert not conversation.messages.exists()


def test_it_lets_only_one_claim_win(conversation):
    _, turn = actions.do_send_user_message(conversation, "hello")
    first = actions.claim_turn(turn.pk)
    second = actions.claim_turn(turn.pk)
    assert first is not None and first.status == Turn.Status.RUNNING
    assert first.lease_until > timezone.now()
    assert second is None


def test_it_interrupts_a_turn_whose_lease_expired_instead_of_rerunning_it(conversation):
    _, turn = actions.do_send_user_message(conversation, "hello")
    claimed = actions.claim_turn(turn.pk)
    reply = actions.do_start_reply(claimed)
    actions.flush_reply(reply, "partial answer")
    Turn.objects.filter(pk=turn.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert actions.claim_turn(turn.pk) is None  # a redelivered task

    turn.refresh_from_db()
    reply.refresh_from_db()
    assert turn.status == Turn.Status.INTERRUPTED
    assert turn.error_code == "worker_lost"
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content == "partial answer"


def test_the_sweep_interrupts_expired_turns_and_requeues_lost_ones(conversation, owner, no_worker):
    _, running = actions.do_send_user_message(conversation, "one")
    actions.claim_turn(running.pk)
    Turn.objects.filter(pk=running.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    other = ConversationFactory(owner=owner)
    _, queued = actions.do_send_user_message(other, "two")
    Turn.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    no_worker.reset_mock()

    assert actions.do_sweep_turns() == {"interrupted": 1, "requeued": 1}
    running.refresh_from_db()
    assert running.status == Turn.Status.INTERRUPTED
    no_worker.assert_called_once_with(queued.pk)


def test_it_retries_only_the_latest_finished_turn(conversation):
    _, turn = actions.do_send_user_message(conversation, "hello")
    with pytest.raises(actions.ActionError, match="nothing to retry"):
        actions.do_retry_turn(conversation, turn.pk)
    actions.do_finish_turn(actions.claim_turn(turn.pk), Turn.Status.FAILED, "x", "boom")
    retry = actions.do_retry_turn(conversation, turn.pk)
    assert retry.user_message_id == turn.user_message_id
    assert retry.status == Turn.Status.QUEUED
    with pytest.raises(actions.ActionError, match="most recent"):
        actions.do_retry_turn(conversation, turn.pk)


def test_stop_ends_a_queued_turn_at_once_and_flags_a_running_one(conversation):
    _, turn = actions.do_send_user_message(conversation, "hello")
    actions.do_request_stop(conversation)
    turn.refresh_from_db()
    assert turn.status == Turn.Status.STOPPED

    _, turn = actions.do_send_user_message(conversation, "again")
    actions.claim_turn(turn.pk)
    actions.do_request_stop(conversation)
    turn.refresh_from_db()
    assert turn.status == Turn.Status.RUNNING and turn.stop_requested
    assert actions.stopped_turns([turn.pk]) == {turn.pk}


def test_a_stop_racing_a_claim_waits_instead_of_deadlocking(conversation):
    _, turn = actions.do_send_user_message(conversation, "hello")
    errors: list[Exception] = []

    def stop() -> None:
        try:
            actions.do_request_stop(conversation)
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


def test_access_is_for_the_owner_only(conversation, owner, other_user, staff):
    assert actions.access_conversation(owner, conversation.id) == conversation
    for stranger in (other_user, staff):
        with pytest.raises(Http404):
            actions.access_conversation(stranger, conversation.id)
    with pytest.raises(Http404):
        actions.access_conversation(owner, "not-a-uuid")


def test_it_switches_the_model_of_a_conversation(conversation, settings):
    settings.CODEACT_MODELS = [
        {"key": "default", "label": "Default"},
        {"key": "qwen", "label": "Qwen"},
    ]
    actions.do_set_model(conversation, "qwen")
    conversation.refresh_from_db()
    assert conversation.model == "qwen"
    assert events_after(conversation, 0)[-1]["conversation"]["model"] == "qwen"
    with pytest.raises(actions.ActionError) as refused:
        actions.do_set_model(conversation, "gpt-17")
    assert refused.value.code == "unknown_model"
    conversation.refresh_from_db()
    assert conversation.model == "qwen"


def test_an_interrupted_turn_marks_its_running_code_as_lost(conversation):
    from chat.models import Execution

    _message, turn = actions.do_send_user_message(conversation, "run it")
    turn = actions.claim_turn(turn.pk)
    reply = actions.do_start_reply(turn)
    execution = actions.do_start_execution(turn, reply, "import time; time.sleep(99)", {})
    Turn.objects.filter(pk=turn.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    assert actions.do_sweep_turns()["interrupted"] == 1
    execution.refresh_from_db()
    assert execution.status == Execution.Status.LOST
    assert "not run again" in execution.detail
    assert execution.finished_at is not None
    kinds = [e["type"] for e in events_after(conversation, 0)]
    assert kinds.count("execution") == 1  # one row, announced at its latest state


def test_what_send_and_claim_publish_is_what_a_resync_returns(conversation):
    """The send and the claim each write in one statement and build the events from
    what it returned: those events must match the rows a reconnecting client reads."""
    published: list[dict] = []
    with mock.patch(
        "chat.broadcast.publish", side_effect=lambda _c, *events: published.extend(events)
    ):
        _, turn = actions.do_send_user_message(conversation, "first question")
        claimed = actions.claim_turn(turn.pk)
        assert claimed is not None
        actions.do_finish_reply(claimed.first_reply, "an answer", "complete", final=True)
        actions.do_finish_turn(claimed, Turn.Status.DONE)
        _, turn = actions.do_send_user_message(conversation, "second question")
        actions.claim_turn(turn.pk)
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
    actions.do_send_user_message(conversation, "first")
    with transaction.atomic():
        with pytest.raises(actions.ActionError):
            actions.do_send_user_message(conversation, "second")
        assert conversation.messages.count() == 1  # the transaction still works


def test_the_stop_watch_tells_each_running_turn_of_its_own_stop(owner):
    from chat.runner import StopWatch

    watch = StopWatch(interval=0.05)
    turns = []
    for _ in range(2):
        _, turn = actions.do_send_user_message(ConversationFactory(owner=owner), "hello")
        turns.append(actions.claim_turn(turn.pk))
    stopped, running = (watch.watch(t.pk) for t in turns)
    actions.do_request_stop(turns[0].conversation)
    assert stopped.wait(10)
    time.sleep(0.2)  # a few more rounds of the watch
    assert not running.is_set()
    watch.forget(turns[0].pk)
    watch.forget(turns[1].pk)
    assert actions.stopped_turns([t.pk for t in turns]) == {turns[0].pk}
