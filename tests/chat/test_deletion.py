"""Deleting a conversation: its sandbox goes at once, and CODEACT_RETENTION says
whether the rows go too (delete) or stay for reviewers until purged
(keep-for-review), hidden from every page, export and socket of the owner."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from chat.actions import conversations, messages
from chat.models import Conversation, ReviewNote, SandboxRecord, Turn
from review.permissions import REVIEWERS_GROUP, ensure_reviewers_group
from tests.conftest import open_socket
from tests.factories import ConversationFactory, UserFactory, analysis_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent_tasks():
    with mock.patch("chat.actions.conversations.celery_app.send_task") as send:
        yield send


@pytest.fixture
def reviewer():
    user = UserFactory(username="reviewer", is_staff=True)
    ensure_reviewers_group()
    user.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
    return user


def claimed_sandbox(conversation: Conversation) -> SandboxRecord:
    return SandboxRecord.objects.create(
        container_id=f"c{conversation.pk.hex}",
        state=SandboxRecord.State.CLAIMED,
        conversation=conversation,
        owner=conversation.owner,
        image="test",
    )


def test_it_deletes_at_once_and_releases_the_sandbox(owner, reviewer, sent_tasks, settings):
    settings.CODEACT_RETENTION = "delete"
    conversation = analysis_conversation(owner)
    record = claimed_sandbox(conversation)
    ReviewNote.objects.create(conversation=conversation, author=reviewer, text="look")
    conversations.do_delete_conversation(conversation)
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not ReviewNote.objects.exists()
    sent_tasks.assert_called_once_with(conversations.RELEASE_SANDBOXES, args=[[record.pk]])


def test_it_keeps_a_deleted_conversation_for_review_hidden_from_its_owner(
    client, owner, reviewer, sent_tasks, settings
):
    settings.CODEACT_RETENTION = "keep-for-review"
    conversation = analysis_conversation(owner)
    record = claimed_sandbox(conversation)
    file = conversation.files.create(
        path="a.txt", origin="upload", size=1, sha256="0", content=b"x"
    )
    ReviewNote.objects.create(conversation=conversation, author=reviewer, text="look")
    Conversation.objects.filter(pk=conversation.pk).update(flagged=True)
    client.force_login(owner)
    assert client.post(reverse("chat:delete", args=[conversation.id])).status_code == 302

    conversation.refresh_from_db()
    assert conversation.deleted_at is not None and conversation.flagged
    assert ReviewNote.objects.filter(conversation=conversation).exists()
    sent_tasks.assert_called_once_with(conversations.RELEASE_SANDBOXES, args=[[record.pk]])
    assert str(conversation.id) not in client.get(reverse("chat:home")).content.decode()
    for url in (
        reverse("chat:conversation", args=[conversation.id]),
        reverse("chat:export_ipynb", args=[conversation.id]),
        reverse("chat:export_md", args=[conversation.id]),
        reverse("chat:download", args=[conversation.id, file.pk]),
    ):
        assert client.get(url).status_code == 404, url
    client.force_login(reviewer)
    page = client.get(reverse("review:transcript", args=[conversation.id]))
    assert page.status_code == 200 and "look" in page.content.decode()


def test_keep_for_review_stops_the_running_turn(owner, sent_tasks, settings):
    settings.CODEACT_RETENTION = "keep-for-review"
    conversation = ConversationFactory(owner=owner)
    with mock.patch("chat.actions.messages.send_turn"):
        _, turn = messages.do_send_user_message(conversation, "work")
    conversations.do_delete_conversation(conversation)
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.STOPPED


async def test_the_socket_of_a_deleted_conversation_is_refused(owner, sent_tasks, settings):
    from channels.db import database_sync_to_async

    settings.CODEACT_RETENTION = "keep-for-review"
    conversation = await database_sync_to_async(ConversationFactory)(owner=owner)
    await database_sync_to_async(conversations.do_delete_conversation)(conversation)
    async with open_socket(owner, conversation.id) as sock:
        assert not sock.connected


def test_it_purges_conversations_kept_past_the_retention_days(owner, settings):
    settings.CODEACT_RETENTION_DAYS = 30
    old, recent, _live = (analysis_conversation(owner, title=t) for t in ("old", "recent", "live"))
    Conversation.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    Conversation.objects.filter(pk=recent.pk).update(deleted_at=timezone.now() - timedelta(days=1))
    assert conversations.do_purge_deleted_conversations() == 1
    assert set(Conversation.objects.values_list("title", flat=True)) == {"recent", "live"}
