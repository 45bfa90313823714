"""Finding conversations: flags and notes, and the admin's filters."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from chat.actions.feedback import do_rate
from chat.models import (
    AuditRecord,
    Conversation,
    Execution,
    Message,
    ReviewNote,
    Turn,
)
from tests.factories import analysis_conversation, backdate

pytestmark = pytest.mark.django_db


def test_a_reviewer_flags_and_notes_without_touching_last_activity(client, reviewer, analysis):
    before = Conversation.objects.get(pk=analysis.pk).updated_at
    client.force_login(reviewer)
    client.post(reverse("review:flag", args=[analysis.id]), {"flagged": "1"})
    client.post(reverse("review:note", args=[analysis.id]), {"text": "Check the axis labels"})
    client.post(reverse("review:note", args=[analysis.id]), {"text": "   "})  # refused
    conversation = Conversation.objects.get(pk=analysis.pk)
    assert conversation.flagged and conversation.flagged_by == reviewer
    assert conversation.updated_at == before
    assert list(ReviewNote.objects.values_list("text", flat=True)) == ["Check the axis labels"]
    page = client.get(reverse("review:transcript", args=[analysis.id])).content.decode()
    assert "Check the axis labels" in page and "Remove flag" in page
    actions = list(AuditRecord.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["flag", "note", "transcript"]


def _conversations_listed(client: Any, **params: str) -> set[str]:
    response = client.get(reverse("admin:chat_conversation_changelist"), params)
    assert response.status_code == 200
    return {c.title for c in response.context["cl"].result_list}


def test_a_reviewer_finds_yesterdays_conversations_with_errors(client, reviewer, owner):
    failing = analysis_conversation(owner, title="failing yesterday")
    Execution.objects.filter(conversation=failing).update(status="error")
    backdate(failing, 1)
    clean = analysis_conversation(owner, title="clean yesterday")
    backdate(clean, 1)
    today = analysis_conversation(owner, title="failing today")
    Turn.objects.filter(conversation=today).update(status="failed")
    old = analysis_conversation(owner, title="failing last week")
    Execution.objects.filter(conversation=old).update(status="timeout")
    backdate(old, 6)
    client.force_login(reviewer)
    assert _conversations_listed(client, errors="yes", active="yesterday") == {"failing yesterday"}
    assert _conversations_listed(client, errors="yes") == {
        "failing yesterday",
        "failing today",
        "failing last week",
    }
    assert _conversations_listed(client, errors="no") == {"clean yesterday"}
    assert _conversations_listed(client, turn_status="failed") == {"failing today"}
    response = client.get(reverse("admin:chat_conversation_changelist"), {"errors": "yes"})
    row = next(c for c in response.context["cl"].result_list if c.title == "failing yesterday")
    assert (row.n_turns, row.n_executions, row.n_errors) == (1, 1, 1)


def test_rating_and_flag_filters(client, reviewer, owner):
    liked = analysis_conversation(owner, title="liked")
    disliked = analysis_conversation(owner, title="disliked")
    analysis_conversation(owner, title="unrated")
    for conversation, rating in ((liked, 1), (disliked, -1)):
        answer = Message.objects.get(conversation=conversation, final=True)
        do_rate(conversation, owner, answer.pk, rating, "")
    Conversation.objects.filter(pk=disliked.pk).update(flagged=True)
    client.force_login(reviewer)
    assert _conversations_listed(client, rating="up") == {"liked"}
    assert _conversations_listed(client, rating="down") == {"disliked"}
    assert _conversations_listed(client, rating="unrated") == {"unrated"}
    assert _conversations_listed(client, flagged__exact="1") == {"disliked"}
    assert _conversations_listed(client, q="df.shape") == {"liked", "disliked", "unrated"}
