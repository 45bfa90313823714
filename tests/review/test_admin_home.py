"""The admin home warns when sandboxes run without gVisor."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chat.models import SandboxRecord

pytestmark = pytest.mark.django_db


def home(client, user):
    client.force_login(user)
    return client.get(reverse("admin:index")).content.decode()


def test_it_warns_when_the_latest_sandboxes_run_under_runc(client, superuser):
    SandboxRecord.objects.create(container_id="a" * 64, image="i", runtime="runsc")
    SandboxRecord.objects.create(container_id="b" * 64, image="i", runtime="runc")
    page = home(client, superuser)
    assert 'id="sandbox-runtime-warning"' in page
    assert "shares the host&#x27;s kernel" in page


def test_it_says_nothing_under_gvisor_or_before_any_sandbox(client, superuser):
    assert 'id="sandbox-runtime-warning"' not in home(client, superuser)
    SandboxRecord.objects.create(container_id="a" * 64, image="i", runtime="runc")
    SandboxRecord.objects.create(container_id="b" * 64, image="i", runtime="runsc")
    assert 'id="sandbox-runtime-warning"' not in home(client, superuser)


def test_reviewers_find_conversations_their_owner_deleted(client, reviewer, owner, settings):
    from chat.actions.conversations import do_delete_conversation
    from tests.factories import ConversationFactory

    settings.CODEACT_RETENTION = "keep-for-review"
    kept, gone = ConversationFactory(owner=owner, title="Kept"), ConversationFactory(owner=owner)
    do_delete_conversation(gone)
    client.force_login(reviewer)
    url = reverse("admin:chat_conversation_changelist")
    deleted = client.get(url, {"deleted": "yes"}).content.decode()
    assert str(gone.pk) in deleted and str(kept.pk) not in deleted
    assert str(kept.pk) in client.get(url, {"deleted": "no"}).content.decode()
