"""The owner rates answers in their own conversation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from chat.models import (
    Conversation,
    Feedback,
    Message,
)
from tests.factories import analysis_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysis(owner: Any) -> Conversation:
    return analysis_conversation(owner)


def _rate(client: Any, conversation: Conversation, message: Message, body: Any) -> Any:
    return client.post(
        reverse("chat:feedback", args=[conversation.id, message.pk]),
        data=body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
    )


def test_an_owner_rates_an_answer_changes_and_clears_it(client, owner, analysis):
    answer = Message.objects.get(conversation=analysis, final=True)
    client.force_login(owner)
    response = _rate(client, analysis, answer, {"rating": -1, "comment": " Wrong axis "})
    assert response.status_code == 200
    assert response.json() == {"feedback": {"rating": -1, "comment": "Wrong axis"}}
    _rate(client, analysis, answer, {"rating": 1, "comment": ""})
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment, feedback.user) == (1, "", owner)
    page = client.get(reverse("chat:conversation", args=[analysis.id])).content.decode()
    assert f'"{answer.pk}": {{"rating": 1' in page  # the page starts with the rating shown
    assert _rate(client, analysis, answer, {"rating": None}).json() == {"feedback": None}
    assert not Feedback.objects.exists()


@pytest.mark.parametrize(
    "body,status,code",
    [
        ("not json", 400, "malformed"),
        ([1, 2], 400, "malformed"),
        ({"rating": 5}, 400, "invalid_rating"),
        ({"rating": True}, 400, "invalid_rating"),
        ({"rating": 1, "comment": "x" * 2001}, 400, "comment_too_long"),
    ],
)
def test_bad_feedback_is_refused_with_a_reason(client, owner, analysis, body, status, code):
    answer = Message.objects.get(conversation=analysis, final=True)
    client.force_login(owner)
    response = _rate(client, analysis, answer, body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert not Feedback.objects.exists()


def test_only_the_owner_rates_and_only_answers(client, owner, other_user, analysis):
    answer = Message.objects.get(conversation=analysis, final=True)
    question = Message.objects.get(conversation=analysis, role="user")
    client.force_login(other_user)
    assert _rate(client, analysis, answer, {"rating": 1}).status_code == 404
    client.force_login(owner)
    assert _rate(client, analysis, question, {"rating": 1}).status_code == 404
    assert not Feedback.objects.exists()
