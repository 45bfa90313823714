"""Chromium (Debian's package) driven by Playwright against the app served as
in production: Daphne, a Celery worker, PostgreSQL, Redis and a model server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ensure_worker
from tests.support.processes import ARTIFACTS, Process, free_port, start_web

# Playwright's sync API keeps an event loop in the test thread, and Django then
# refuses ORM calls from it; the test process only sets up rows. The app's own
# processes do not inherit this (see tests.support.processes.process_env).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def web(_workers: list[Process]) -> Iterator[str]:
    ensure_worker(_workers)
    port = free_port()
    proc = start_web(port)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API runs an event loop in the main thread
    while it is open, which async tests elsewhere in the session cannot share."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives Chromium a new temporary user-data dir every time.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
