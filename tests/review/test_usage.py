"""The staff usage overview: counts per user and day, never content."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.models import (
    Execution,
)
from tests.factories import analysis_conversation, backdate

pytestmark = pytest.mark.django_db


def test_usage_counts_per_user_and_day(client, staff, owner, other_user):
    first = analysis_conversation(owner, title="a")
    Execution.objects.filter(conversation=first).update(status="error", duration=2.5)
    second = analysis_conversation(owner, title="b")
    Execution.objects.filter(conversation=second).update(status="timeout", duration=20.0)
    third = analysis_conversation(other_user, title="c")
    backdate(third, 1)
    Execution.objects.filter(conversation=third).update(
        started_at=timezone.now() - timedelta(days=1)
    )
    client.force_login(staff)
    response = client.get(reverse("review:usage"), {"days": "7"})
    rows = {(r.username, r.day): r for r in response.context["rows"]}
    today = timezone.localdate()
    mine = rows[("owner", today)]
    assert (mine.turns, mine.executions, mine.errors, mine.timeouts) == (2, 2, 2, 1)
    assert mine.sandbox_seconds == pytest.approx(22.5)
    # the timed-out cell's own error output is not counted twice
    assert dict(mine.error_types) == {"KeyError": 1, "Timeout": 1}
    theirs = rows[("mallory", today - timedelta(days=1))]
    assert (theirs.turns, theirs.executions, theirs.errors) == (1, 1, 0)
    page = response.content.decode()
    assert "KeyError" in page and "Plot it" not in page  # counts, never content
    csv_text = client.get(reverse("review:usage"), {"days": "7", "format": "csv"}).content
    header, *lines = csv_text.decode().splitlines()
    assert header.startswith("day,user,turns,failed_turns,executions,errors,timeouts")
    assert f"{today},owner,2,0,2,2,1,22.5,KeyError (1); Timeout (1)" in lines
    only = client.get(reverse("review:usage"), {"days": "1", "user": str(other_user.pk)})
    assert only.context["rows"] == []


def test_staff_see_usage_against_quota(client, staff, owner, settings):
    from chat.models import Message, Turn

    settings.CODEACT_QUOTA_CONVERSATIONS = 2
    settings.CODEACT_QUOTA_CONCURRENT_TURNS = 1
    settings.CODEACT_QUOTA_TOKENS_PER_DAY = 10_000
    settings.CODEACT_QUOTA_TURNS_PER_HOUR = 0
    settings.CODEACT_QUOTA_STORED_MB = 1
    conversation = analysis_conversation(owner, title="a")
    analysis_conversation(owner, title="b")
    Turn.objects.filter(conversation=conversation).update(status="running")
    replies = Message.objects.filter(conversation=conversation, role="assistant").update(
        usage={"prompt_tokens": 1200, "completion_tokens": 34}
    )
    conversation.files.create(path="f", origin="upload", size=512 * 1024, sha256="0", content=b"")
    client.force_login(staff)
    response = client.get(reverse("review:usage"), {"days": "1"})
    (row,) = response.context["quotas"]
    assert row.username == "owner"
    uses = {u.name: (u.label, u.full) for u in row.uses}
    assert uses["Conversations"] == ("2 of 2", True)
    assert uses["Running now"] == ("1 of 1", True)
    assert uses["Tokens today"] == (f"{replies * 1234:,} of 10,000", False)
    assert uses["Turns, last hour"] == ("2 (no limit)", False)
    assert uses["Stored files"] == ("512.0 KB of 1.0 MB", False)
    page = response.content.decode()
    assert "Quotas now" in page and "(at limit)" in page
