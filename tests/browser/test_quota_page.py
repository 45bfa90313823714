"""The chat page under the resync quota: a refused `resume` is shown and asked
again later, so the page still catches up (it never stays stuck)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.test_chat_page import sign_up
from tests.support.processes import free_port, start_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def strict_web(worker) -> Iterator[str]:
    """A web server allowing one resync per user every 8 seconds."""
    port = free_port()
    proc = start_web(port, CODEACT_QUOTA_RESUMES="1", CODEACT_QUOTA_RESUME_WINDOW="8")
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def test_a_refused_resync_is_asked_again_later(page, strict_web):
    frames: list[tuple[float, dict]] = []
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived", lambda payload: frames.append((time.monotonic(), json.loads(payload)))
        ),
    )
    sign_up(page, strict_web, "resyncer")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")

    def refusals() -> list[float]:
        return [t for t, f in frames if f.get("code") == "quota_resumes"]

    for _ in range(3):  # each load resyncs once; a load inside the same window is refused
        if refusals():
            break
        page.reload()
        expect(page.locator("#connection")).to_have_text("Connected")
        page.wait_for_timeout(300)
    assert refusals(), "a second resync inside the window was refused"
    expect(page.locator("body")).to_contain_text("Too many resyncs")
    refused_at = refusals()[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(t > refused_at and f["type"] == "sync" for t, f in frames):
            break
        page.wait_for_timeout(250)
    assert any(t > refused_at and f["type"] == "sync" for t, f in frames), "the page resynced"
