"""The admin tells the user's cells and superseded answers apart from the rest."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.models import Execution, Message

pytestmark = pytest.mark.django_db


def test_messages_filter_by_superseded(client, reviewer, analysis):
    old = Message.objects.filter(conversation=analysis, final=True).get()
    old.content = "An answer the user replaced"
    old.superseded_at = timezone.now()
    old.save()
    client.force_login(reviewer)
    url = reverse("admin:chat_message_changelist")
    replaced = client.get(url, {"superseded": "yes"}).content.decode()
    current = client.get(url, {"superseded": "no"}).content.decode()
    assert "An answer the user replaced" in replaced
    assert "An answer the user replaced" not in current and "Plot it" in current


def test_executions_filter_by_origin(client, reviewer, analysis):
    Execution.objects.filter(conversation=analysis).update(code="print('users own cell')")
    client.force_login(reviewer)
    url = reverse("admin:chat_execution_changelist")
    assert "users own cell" not in client.get(url, {"origin__exact": "user"}).content.decode()
    Execution.objects.filter(conversation=analysis).update(origin=Execution.Origin.USER)
    page = client.get(url, {"origin__exact": "user"}).content.decode()
    assert "users own cell" in page and "Run by you" in page
