"""PostgreSQL restarts (an immediate shutdown, as a crash) while a reply streams
and while a cell runs. Each turn completes or fails with a reason the page is
shown, nothing is left running, and the next turn works.

The app runs against a cluster of the test's own (initdb into a temporary
directory), never the machine's shared PostgreSQL that other test runs use."""

from __future__ import annotations

import asyncio

import pytest

from tests import envplugin
from tests.support.chaos import App, PrivatePostgres, db_view, manage, new_user, scalar
from tests.support.page_client import FINAL, PageClient
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

REPLY = Script(chunks=[f"w{i} " for i in range(80)], delay=0.05)
CELL = "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('finished')"
STEP = Script(text=f"<execute>\n{CELL}\n</execute>")


@pytest.fixture
def postgres():
    server = PrivatePostgres()
    server.init()
    yield server
    server.destroy()


@pytest.fixture
def app(postgres, scripted_server):
    app = App(
        "pg",
        env={
            "DATABASE_URL": postgres.url(),
            # Its own deployment: its worker must not take this run's other sandboxes
            # for orphans (they are not in its database).
            "CODEACT_CHANNEL_PREFIX": f"{envplugin.RUN_ID}-pg",
            "CODEACT_SWEEP_INTERVAL": "1",
        },
        beat=True,  # sweeps turns whose worker lost them, as in production
    )
    manage(app.env, "migrate", "--noinput")
    yield app.start()
    app.stop()


def replying(page: PageClient) -> bool:
    return any(m["role"] == "assistant" and m["content"] for m in page.rows["message"].values())


def printing(page: PageClient) -> bool:
    return any(o["text"] for o in page.rows["output"].values())


async def test_a_postgres_restart_mid_turn_ends_every_turn_cleanly(app, postgres, model_server):
    cookie, conversation_id = await asyncio.to_thread(new_user, app.env, "pg-chaos")
    page = PageClient(app.port, cookie, conversation_id)
    await page.connect()

    for number, (script, reached) in enumerate(((REPLY, replying), (STEP, printing)), 1):
        model_server.reset()  # a turn cut short leaves its answer's script unused
        model_server.push(script, Script(text="Answered."))
        await page.send({"type": "user_message", "text": f"Turn {number}"})
        await page.pump_until(reached, 60)
        await asyncio.to_thread(postgres.crash)
        await asyncio.to_thread(postgres.start)
        await page.pump_until(lambda p, n=number: p.turns_final(n), 90)

    # The page was told how each ended: done, or failed because the database went away.
    for turn in page.rows["turn"].values():
        assert turn["status"] in FINAL
        assert turn["status"] == "done" or turn["error_code"] == "database_unavailable", turn
        assert turn["status"] == "done" or "database" in turn["error"], turn

    # The next turn works.
    model_server.reset()
    model_server.push(Script(text="Still here."))
    await page.send({"type": "user_message", "text": "Are you there?"})
    await page.pump_until(lambda p: p.turns_final(3), 60)
    await page.close()

    url = postgres.url()
    stored = await asyncio.to_thread(db_view, url, conversation_id)
    statuses = [status for status, _code in stored["turns"].values()]
    assert len(statuses) == 3 and statuses[-1] == "done"
    assert all(status in FINAL for status in statuses)
    users = [m for m in stored["messages"].values() if m[0] == "user"]
    assert len(users) == 3  # each message stored once
    assert not any(m[1] == "streaming" for m in stored["messages"].values())
    assert not any(e == ("running",) for e in stored["executions"].values())
    assert page.view() == stored
    running = await asyncio.to_thread(
        scalar, url, "SELECT count(*) FROM chat_turn WHERE status IN ('queued', 'running')"
    )
    assert running == 0
