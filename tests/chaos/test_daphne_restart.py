"""Daphne restarts while replies stream and cells print: the pages reconnect,
resync by sequence number, and end with exactly the rows in PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from tests.conftest import session_cookie
from tests.factories import ConversationFactory, UserFactory
from tests.support import processes
from tests.support.chaos import App, db_view
from tests.support.page_client import PageClient
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.chaos]

USERS = 3
LINES = 30
CELL = f"import time\nfor i in range({LINES}):\n    print(i, flush=True)\n    time.sleep(0.1)"
STEP = Script(
    chunks=[f"w{i} " for i in range(60)] + ["<execute>\n", CELL, "\n</execute>"], delay=0.05
)
ANSWER = Script(chunks=[f"a{i} " for i in range(20)], delay=0.05)


def route(body: dict[str, Any]) -> Script:
    last = body["messages"][-1]["content"]
    return ANSWER if last.startswith("Execution Output:") else STEP


@pytest.fixture
def app(scripted_server):
    app = App("daphne").start()
    yield app
    app.stop()


def make_pages(port: int) -> list[PageClient]:
    pages = []
    for n in range(USERS):
        user = UserFactory(username=f"reader{n}")
        conversation = ConversationFactory(owner=user)
        pages.append(PageClient(port, session_cookie(user), str(conversation.id)))
    return pages


async def restart_web(app: App, crash: bool) -> None:
    if crash:
        await asyncio.to_thread(app.kill, "web")
    else:
        await asyncio.to_thread(app.procs["web"].stop)
    await asyncio.to_thread(app.start_web)


async def test_a_daphne_restart_mid_stream_loses_and_duplicates_nothing(app, model_server):
    model_server.route = route
    pages = await database_sync_to_async(make_pages)(app.port)
    for page in pages:
        await page.connect()
        await page.send({"type": "user_message", "text": "Count to thirty", "client_id": "c1"})

    def replying(page: PageClient) -> bool:
        return any(m["role"] == "assistant" for m in page.rows["message"].values())

    def printing(page: PageClient) -> bool:
        return any(o["text"] for o in page.rows["output"].values())

    # Mid-reply: Daphne is killed outright; mid-cell: it is stopped (SIGTERM).
    for crash, reached in ((True, replying), (False, printing)):
        await asyncio.gather(*(p.pump_until(reached, 60) for p in pages))
        await restart_web(app, crash)
    await asyncio.gather(*(p.pump_until(lambda p: p.turns_final(1), 90) for p in pages))

    url = processes.test_database_url()
    for page in pages:
        await page.close()
        stored = await asyncio.to_thread(db_view, url, page.url.rstrip("/").rsplit("/", 1)[1])
        assert page.errors == []
        assert page.connects >= 3  # it reconnected after each restart
        assert page.view() == stored  # nothing lost, nothing extra, no text twice
        assert [s for s, _code in stored["turns"].values()] == ["done"]
        roles = sorted(role for role, _status, _text in stored["messages"].values())
        assert roles == ["assistant", "assistant", "user"]  # one message, one turn
        assert [o[1] for o in stored["outputs"].values()] == [
            "".join(f"{i}\n" for i in range(LINES))
        ]
