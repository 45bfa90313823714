"""The ownership check and the conversation's own settings."""

from __future__ import annotations

import pytest
from django.http import Http404

from chat.actions import conversations
from chat.actions.errors import ActionError
from chat.serialize import events_after

pytestmark = pytest.mark.django_db(transaction=True)


def test_access_is_for_the_owner_only(conversation, owner, other_user, staff):
    assert conversations.access_conversation(owner, conversation.id) == conversation
    for stranger in (other_user, staff):
        with pytest.raises(Http404):
            conversations.access_conversation(stranger, conversation.id)
    with pytest.raises(Http404):
        conversations.access_conversation(owner, "not-a-uuid")


def test_it_switches_the_model_of_a_conversation(conversation, settings):
    settings.CODEACT_MODELS = [
        {"key": "default", "label": "Default"},
        {"key": "qwen", "label": "Qwen"},
    ]
    conversations.do_set_model(conversation, "qwen")
    conversation.refresh_from_db()
    assert conversation.model == "qwen"
    assert events_after(conversation, 0)[-1]["conversation"]["model"] == "qwen"
    with pytest.raises(ActionError) as refused:
        conversations.do_set_model(conversation, "gpt-17")
    assert refused.value.code == "unknown_model"
    conversation.refresh_from_db()
    assert conversation.model == "qwen"
