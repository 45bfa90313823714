"""Per-user quotas: each limit refuses the next request with a sentence that
names the limit, the number and when it frees up; nothing is stored then."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections
from django.utils import timezone

from chat.actions import conversations, messages, quotas
from chat.actions.errors import ActionError
from chat.models import Conversation, Message, Turn
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def refused(call, *args):
    with pytest.raises(ActionError) as caught:
        call(*args)
    return caught.value


def test_it_refuses_a_conversation_past_the_quota(owner, settings):
    settings.CODEACT_QUOTA_CONVERSATIONS = 2
    conversations.do_create_conversation(owner)
    conversations.do_create_conversation(owner)
    error = refused(conversations.do_create_conversation, owner)
    assert error.code == "quota_conversations"
    assert "2 conversations" in error.message and "Delete one" in error.message
    assert Conversation.objects.filter(owner=owner).count() == 2


def test_it_refuses_a_turn_past_the_concurrent_quota_across_conversations(owner, settings):
    settings.CODEACT_QUOTA_CONCURRENT_TURNS = 2
    first, second, third = (ConversationFactory(owner=owner) for _ in range(3))
    messages.do_send_user_message(first, "one")
    messages.do_send_user_message(second, "two")
    error = refused(messages.do_send_user_message, third, "three")
    assert error.code == "quota_concurrent_turns"
    assert "2 answers queued or running" in error.message
    assert "when one of them finishes" in error.message
    assert not Message.objects.filter(conversation=third).exists()
    Turn.objects.filter(conversation=first).update(status=Turn.Status.DONE)
    messages.do_send_user_message(third, "three")  # a finished turn frees a place


def test_it_lets_one_of_two_simultaneous_sends_past_the_concurrent_quota(owner, settings):
    settings.CODEACT_QUOTA_CONCURRENT_TURNS = 1
    targets = [ConversationFactory(owner=owner) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[str] = []

    def send(conversation: Conversation) -> None:
        start.wait()
        try:
            messages.do_send_user_message(conversation, "at once")
            results.append("sent")
        except ActionError as exc:
            results.append(exc.code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=send, args=(c,)) for c in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["quota_concurrent_turns", "sent"]
    assert Turn.objects.filter(conversation__owner=owner).count() == 1


def test_it_refuses_turns_past_the_hourly_quota_and_says_when(owner, settings):
    settings.CODEACT_QUOTA_TURNS_PER_HOUR = 2
    conversation = ConversationFactory(owner=owner)
    for text in ("one", "two"):
        _, turn = messages.do_send_user_message(conversation, text)
        Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE)
    oldest = Turn.objects.order_by("created_at").first()
    Turn.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(minutes=50))
    error = refused(messages.do_send_user_message, conversation, "three")
    assert error.code == "quota_turns_per_hour"
    oldest.refresh_from_db()
    frees = timezone.localtime(oldest.created_at + timedelta(hours=1)).strftime("%H:%M")
    assert "2 answers in the last hour" in error.message and frees in error.message
    Turn.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(minutes=61))
    messages.do_send_user_message(conversation, "three")


def test_it_refuses_turns_past_the_daily_token_quota(owner, settings):
    settings.CODEACT_QUOTA_TOKENS_PER_DAY = 1000
    conversation = ConversationFactory(owner=owner)
    _, turn = messages.do_send_user_message(conversation, "hello")
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.DONE)
    Message.objects.create(
        conversation=conversation,
        turn=turn,
        role="assistant",
        content="hi",
        usage={"prompt_tokens": 900, "completion_tokens": 100},
    )
    error = refused(messages.do_send_user_message, conversation, "again")
    assert error.code == "quota_tokens_per_day"
    assert "1,000 tokens" in error.message and "midnight" in error.message


def test_it_refuses_a_retry_past_the_concurrent_quota(owner, settings):
    settings.CODEACT_QUOTA_CONCURRENT_TURNS = 1
    failed, busy = ConversationFactory(owner=owner), ConversationFactory(owner=owner)
    _, turn = messages.do_send_user_message(failed, "one")
    Turn.objects.filter(pk=turn.pk).update(status=Turn.Status.FAILED)
    messages.do_send_user_message(busy, "two")
    assert refused(messages.do_retry_turn, failed, turn.pk).code == "quota_concurrent_turns"


def test_it_refuses_stored_bytes_past_the_quota(owner, settings):
    settings.CODEACT_QUOTA_STORED_MB = 1
    conversation = ConversationFactory(owner=owner)
    conversation.files.create(path="a.bin", origin="upload", size=900_000, sha256="0", content=b"")
    quotas.check_stored_bytes(owner.pk, 100_000)
    error = refused(quotas.check_stored_bytes, owner.pk, 200_000)
    assert error.code == "quota_stored_bytes"
    assert "878.9 KB of the 1.0 MB" in error.message


def test_zero_means_unlimited(owner, settings):
    settings.CODEACT_QUOTA_CONVERSATIONS = 0
    settings.CODEACT_QUOTA_CONCURRENT_TURNS = 0
    settings.CODEACT_QUOTA_TURNS_PER_HOUR = 0
    settings.CODEACT_QUOTA_TOKENS_PER_DAY = 0
    for _ in range(3):
        messages.do_send_user_message(conversations.do_create_conversation(owner), "go")
    assert Turn.objects.filter(status=Turn.Status.QUEUED).count() == 3


def test_the_pages_say_which_quota_refused(client, owner, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    settings.CODEACT_QUOTA_STORED_MB = 1
    settings.CODEACT_QUOTA_CONVERSATIONS = 1
    conversation = ConversationFactory(owner=owner)
    client.force_login(owner)
    upload = SimpleUploadedFile("big.bin", b"x" * (1 << 20 | 1))
    answer = client.post(reverse("chat:upload", args=[conversation.id]), {"file": upload})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "quota_stored_bytes"
    assert not conversation.files.exists()
    page = client.post(reverse("chat:new"), follow=True).content.decode()
    assert "the most one account may keep (1)" in page
