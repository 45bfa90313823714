"""Every admin page that shows conversation content leaves an audit record: list
pages, field filters (recorded as searches) and history views."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chat.models import AuditRecord, Message

pytestmark = pytest.mark.django_db


def records():
    return list(AuditRecord.objects.order_by("id").values("action", "conversations", "detail"))


@pytest.mark.parametrize("model", ["conversation", "turn", "message", "execution", "output"])
def test_it_records_a_list_page_that_shows_content(client, reviewer, analysis, model):
    client.force_login(reviewer)
    assert client.get(reverse(f"admin:chat_{model}_changelist")).status_code == 200

    [row] = records()
    assert row["action"] == "log_row"
    assert row["conversations"] == [str(analysis.id)]
    assert row["detail"] == {"model": model, "view": "list"}


def test_it_records_field_filters_in_the_query_string_as_searches(client, reviewer, analysis):
    client.force_login(reviewer)
    url = reverse("admin:chat_conversation_changelist")
    page = client.get(url, {"turn_status": "done", "owner__id__exact": analysis.owner_id, "o": "2"})
    assert page.status_code == 200

    [row] = records()
    assert row["action"] == "search"
    assert row["conversations"] == [str(analysis.id)]
    assert row["detail"] == {
        "model": "conversation",
        "filters": {"turn_status": "done", "owner__id__exact": str(analysis.owner_id)},
    }


def test_it_records_a_search_that_found_nothing(client, reviewer, analysis):
    client.force_login(reviewer)
    client.get(reverse("admin:chat_message_changelist"), {"q": "no such words", "role": "user"})

    assert records() == [
        {
            "action": "search",
            "conversations": [],
            "detail": {"model": "message", "query": "no such words", "filters": {"role": "user"}},
        }
    ]


def test_it_records_the_history_view(client, reviewer, analysis):
    client.force_login(reviewer)
    message = Message.objects.filter(conversation=analysis).first()
    assert message is not None
    page = client.get(reverse("admin:chat_message_history", args=[message.pk]))
    assert page.status_code == 200

    assert records() == [
        {
            "action": "log_row",
            "conversations": [str(analysis.id)],
            "detail": {"model": "message", "id": str(message.pk), "view": "history"},
        }
    ]


def test_an_empty_list_page_without_criteria_records_nothing(client, reviewer, analysis):
    client.force_login(reviewer)
    assert client.get(reverse("admin:chat_workspacefile_changelist")).status_code == 200
    assert records() == []


def test_a_refused_list_page_records_nothing(client, staff, analysis):
    client.force_login(staff)
    assert client.get(reverse("admin:chat_message_changelist")).status_code == 403
    assert records() == []
