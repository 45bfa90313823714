"""Reviewers see every web request a sandbox made: on the transcript, in the admin
(filterable) and in the JSON export."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.models import Execution, WebRequest
from review.datasets import conversation_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def requests_made(analysis):
    execution = Execution.objects.get(conversation=analysis)
    common = {"conversation": analysis, "execution": execution, "at": timezone.now()}
    WebRequest.objects.create(
        **common,
        method="GET",
        host="site.test",
        port=80,
        url="http://site.test/table.html",
        status=200,
        outcome="status 200",
        reply_bytes=2048,
        duration_ms=31,
        server="198.51.100.10",
    )
    WebRequest.objects.create(
        **common,
        method="CONNECT",
        host="10.1.2.3",
        port=443,
        status=403,
        refused=True,
        outcome="blocked: private address",
        error="ERR_CODEACT_PRIVATE",
    )
    analysis.web_access = True
    analysis.save()
    return analysis


def test_the_transcript_lists_them_under_their_cell(client, reviewer, requests_made):
    client.force_login(reviewer)
    page = client.get(reverse("review:transcript", args=[requests_made.id])).content.decode()
    assert "2 web requests, 1 refused" in page
    assert "GET http://site.test/table.html" in page and "status 200" in page
    assert "CONNECT https://10.1.2.3" in page and "blocked: private address" in page
    assert "198.51.100.10" in page


def test_the_admin_filters_refusals(client, reviewer, requests_made):
    client.force_login(reviewer)
    listing = client.get("/admin/chat/webrequest/?refused__exact=1").content.decode()
    assert "10.1.2.3" in listing and "site.test" not in listing
    everything = client.get("/admin/chat/webrequest/?q=site.test").content.decode()
    assert "site.test" in everything


def test_the_admin_is_for_reviewers_only(client, owner, requests_made):
    owner.is_staff = True
    owner.save()
    client.force_login(owner)
    assert client.get("/admin/chat/webrequest/").status_code == 403


def test_the_export_carries_them(requests_made):
    exported = conversation_record(requests_made)
    assert exported["web_access"] is True
    made = exported["executions"][0]["web_requests"]
    assert [r["outcome"] for r in made] == ["status 200", "blocked: private address"]
    assert made[1]["refused"] is True and made[1]["port"] == 443
