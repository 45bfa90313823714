"""Web access as a user sees it: a deployment with CODEACT_EGRESS=proxy (its own
Daphne and worker, on a queue of their own), a real Squid and a test "internet"
(tests/support/egress.py), driven in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import expect

from chat.models import Conversation, Execution, WebRequest
from sandbox.docker_backend import docker_client
from tests.browser.conftest import screenshot
from tests.browser.test_chat_page import remove_sandboxes, sign_up
from tests.support.egress import egress_proxy, internet_of_tests
from tests.support.processes import Process, free_port, start_web, start_worker
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
def web_with_egress(
    django_db_setup: None, django_db_blocker: Any, scripted_server: Any
) -> Iterator[str]:
    """Daphne and a worker with web access on, sharing a queue no other worker reads."""
    client = docker_client()
    with internet_of_tests(client), egress_proxy(client, prefix=settings.CHANNEL_PREFIX) as proxy:
        env = {
            "CELERY_QUEUE": f"{settings.CELERY_TASK_DEFAULT_QUEUE}-egress",
            "CODEACT_EGRESS": "proxy",
            "CODEACT_EGRESS_NETWORK": proxy.net.name,
            "CODEACT_EGRESS_PORT": str(proxy.policy.listen_port),
            "CODEACT_EGRESS_REPLY_MAX_MB": "1",
        }
        procs: list[Process] = []
        try:
            procs.append(start_worker("worker-egress", **env))
            port = free_port()
            procs.append(start_web(port, **env))
            yield f"http://127.0.0.1:{port}"
        finally:
            for proc in procs:
                proc.stop()
            with django_db_blocker.unblock():
                remove_sandboxes()
                connections.close_all()  # or the test database cannot be dropped


FETCH = """\
import requests, pandas as pd
from bs4 import BeautifulSoup
page = requests.get("http://site.test/table.html", timeout=10)
rows = BeautifulSoup(page.text, "html.parser").select("#cities tbody tr")
cities = pd.DataFrame([[td.text for td in tr.find_all("td")] for tr in rows],
                      columns=["city", "population", "area_km2"]).astype({"population": int})
inside = requests.get("http://10.1.2.3/admin", timeout=10)
print("internal address:", inside.status_code)
cities.sort_values("population", ascending=False)"""


def test_a_user_fetches_a_table_sees_the_requests_and_switches_web_access_off(
    page, web_with_egress, model_server
):
    web = web_with_egress
    model_server.push(
        Script(chunks=["I will fetch the page.\n<execute>\n", FETCH, "\n</execute>"]),
        Script(text="Lisbon is the largest of the three cities. The internal address was refused."),
    )
    sign_up(page, web, "wendy")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    switch = page.get_by_role("switch", name="Web access")
    expect(switch).to_be_checked()  # CODEACT_EGRESS_DEFAULT

    page.get_by_label("Message").fill("Tabulate the cities on http://site.test/table.html")
    page.get_by_label("Message").press("Enter")
    cell = page.get_by_role("region", name="Code cell 1")
    expect(cell.locator(".output-html table")).to_contain_text("Lisbon", timeout=60_000)
    expect(cell.locator(".output-stream")).to_contain_text("internal address: 403")
    web_note = cell.locator(".web-requests summary")
    expect(web_note).to_have_text("2 web requests, 1 refused")
    web_note.click()
    expect(cell.locator(".web-refused")).to_contain_text("blocked: private address")
    expect(cell.locator(".web-list")).to_contain_text("GET http://site.test/table.html")
    expect(page.locator(".msg-final")).to_contain_text("Lisbon is the largest", timeout=15_000)
    screenshot(page, "web-01-fetched-table")

    # What the model was told, and what is on record.
    conversation = Conversation.objects.get(owner__username="wendy")
    execution = Execution.objects.get(conversation=conversation)
    assert "[Web requests through the proxy: 2, 1 refused" in execution.observation
    assert "GET http://10.1.2.3/admin → blocked: private address" in execution.observation
    system = model_server.requests[0]["messages"][0]["content"]
    assert "can fetch web pages" in system
    records = list(WebRequest.objects.filter(conversation=conversation))
    assert {(r.host, r.outcome) for r in records} == {
        ("site.test", "status 200"),
        ("10.1.2.3", "blocked: private address"),
    }
    assert all(r.execution_id == execution.pk for r in records)

    page.reload()
    expect(
        page.get_by_role("region", name="Code cell 1").locator(".web-requests summary")
    ).to_have_text("2 web requests, 1 refused")

    # Off: the next code runs in a new sandbox that has no network at all.
    switch.uncheck()
    expect(switch).not_to_be_checked()
    model_server.push(
        Script(
            chunks=[
                "<execute>\n",
                "import os, socket\nprint(sorted(os.listdir('/sys/class/net')), "
                "os.environ.get('HTTP_PROXY'))",
                "\n</execute>",
            ]
        ),
        Script(text="There is no network now."),
    )
    page.get_by_label("Message").fill("Is the network still there?")
    page.get_by_label("Message").press("Enter")
    second = page.get_by_role("region", name="Code cell 2")
    expect(second.locator(".output-stream")).to_have_text("['lo'] None\n", timeout=60_000)
    expect(page.get_by_text("Web access was switched off")).to_be_visible()
    expect(second.locator(".web-requests")).to_have_count(0)
    screenshot(page, "web-02-switched-off")
    conversation.refresh_from_db()
    assert conversation.web_access is False
    system = model_server.requests[-1]["messages"][0]["content"]
    assert "no internet access" in system
