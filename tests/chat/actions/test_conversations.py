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


def test_web_access_is_switched_only_where_the_deployment_offers_it(conversation, settings):
    settings.CODEACT_EGRESS = "off"
    with pytest.raises(ActionError) as refused:
        conversations.do_set_web_access(conversation, True)
    assert refused.value.code == "web_access_unavailable"
    settings.CODEACT_EGRESS = "proxy"
    conversations.do_set_web_access(conversation, True)
    conversation.refresh_from_db()
    assert conversation.web_access and conversation.has_web_access
    assert events_after(conversation, 0)[-1]["conversation"]["web_access"] is True
    conversations.do_set_web_access(conversation, False)
    conversation.refresh_from_db()
    assert not conversation.has_web_access
    conversation.web_access = True
    settings.CODEACT_EGRESS = "off"  # the operator turned it off for everyone
    assert not conversation.has_web_access


def test_new_conversations_start_with_the_default_web_access(owner, settings):
    settings.CODEACT_EGRESS_DEFAULT = False
    assert conversations.do_create_conversation(owner).web_access is False
    settings.CODEACT_EGRESS_DEFAULT = True
    assert conversations.do_create_conversation(owner).web_access is True


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
