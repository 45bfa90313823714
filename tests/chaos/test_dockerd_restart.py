"""The Docker engine restarts while a cell runs: the sandbox is gone, the cell
ends `died` with the user and the model told, and the next cell gets a new
sandbox with the conversation's files restored and a notice that variables
were lost.

This restarts the machine's dockerd (SIGTERM, then started the way
scripts/bootstrap starts it): every container on the machine stops. Run it only
when nothing else uses Docker (`make test-chaos` on a CI machine of its own)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import docker
import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from chat.models import Execution, Message
from sandbox.docker_backend import docker_client
from tests.conftest import session_cookie
from tests.factories import ConversationFactory, UserFactory
from tests.support import processes
from tests.support.chaos import App, db_view, wait_for
from tests.support.page_client import PageClient
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.chaos]

SAVE = "secret = 41\nopen('notes.txt', 'w').write('kept on disk')\nprint('saved')"
LONG = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)"
READ = "print(open('notes.txt').read())\nprint(secret)"


def step(code: str) -> Script:
    return Script(text=f"<execute>\n{code}\n</execute>")


def engine_up() -> bool:
    try:
        return bool(docker_client().ping())
    except docker.errors.DockerException:
        return False


def dockerd_pid() -> int:
    pids = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    assert len(pids) == 1, f"expected one dockerd, found {pids}"
    return int(pids[0])


def restart_dockerd() -> None:
    """Stop the engine (SIGTERM: it stops its containers and exits) and start it
    again as scripts/bootstrap does (`nohup dockerd >var/log/dockerd.log`)."""
    pid = dockerd_pid()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 120, "dockerd to exit")
    start_dockerd()


def start_dockerd() -> None:
    log_dir = settings.VAR_DIR / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "dockerd.log").open("ab") as log:
        subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    wait_for(engine_up, 120, "dockerd to answer")


@pytest.fixture
def app(scripted_server):
    app = App("dockerd").start()
    yield app
    app.stop()
    if not engine_up():  # the test failed between stop and start: leave an engine running
        start_dockerd()


def counting(page: PageClient) -> bool:
    """The long cell has printed (not the first turn's cell: its output is there too)."""
    cells = {e["id"] for e in page.rows["execution"].values() if e["code"] == LONG}
    return any(o["execution_id"] in cells and o["text"] for o in page.rows["output"].values())


def task_done(app: App, count: int) -> None:
    """Wait until the worker (this run of it: its log is appended to) has finished
    `count` run_turn tasks."""
    log = app.procs["worker"].log_path

    def finished() -> bool:
        since_start = log.read_text(errors="replace").rsplit(" ready.", 1)[-1]
        return since_start.count("] succeeded in ") >= count  # only run_turn runs there

    wait_for(finished, 30, "the worker's task to finish")


def execution_messages(conversation_id: str) -> tuple[list[Execution], list[Message]]:
    executions = list(Execution.objects.filter(conversation_id=conversation_id).order_by("id"))
    notices = list(Message.objects.filter(conversation_id=conversation_id, role="notice"))
    return executions, notices


async def test_a_dockerd_restart_mid_cell_loses_the_sandbox_not_the_files(app, model_server):
    def make_page() -> PageClient:
        user = UserFactory(username="engine")
        return PageClient(app.port, session_cookie(user), str(ConversationFactory(owner=user).id))

    page = await database_sync_to_async(make_page)()
    conversation_id = page.url.rstrip("/").rsplit("/", 1)[1]
    await page.connect()
    model_server.push(step(SAVE), Script(text="Saved."))
    await page.send({"type": "user_message", "text": "Remember 41 and write a note."})
    await page.pump_until(lambda p: p.turns_final(1), 120)
    # The turn's task lets go of the sandbox just after the page is told the turn is
    # done; a message sent in that instant can find the sandbox busy (a separate
    # race, not this test's subject).
    await asyncio.to_thread(task_done, app, 1)

    model_server.push(step(LONG), Script(text="The session stopped."))
    await page.send({"type": "user_message", "text": "Count for a minute."})
    await page.pump_until(counting, 120)
    await asyncio.to_thread(restart_dockerd)
    await page.pump_until(lambda p: p.turns_final(2), 120)
    # The model was told the cell's process died, and answered after it.
    told = model_server.requests[-1]["messages"][-1]["content"]
    assert "[The Python process died" in told, told

    model_server.push(step(READ), Script(text="The note is there; the number is gone."))
    await page.send({"type": "user_message", "text": "Read the note and the number."})
    await page.pump_until(lambda p: p.turns_final(3), 180)
    await page.close()

    executions, notices = await database_sync_to_async(execution_messages)(conversation_id)
    assert [e.status for e in executions] == ["ok", "died", "error"]
    restored = executions[2]
    assert restored.observation.startswith(
        "Execution Output:\n[Note: this is a new Python session."
    )
    assert "kept on disk" in restored.observation  # the file came back
    assert "NameError" in restored.observation  # the variable did not
    assert [n.code for n in notices] == ["state_lost"]
    stored = await asyncio.to_thread(db_view, processes.test_database_url(), conversation_id)
    assert [status for status, _code in stored["turns"].values()] == ["done"] * 3
    assert page.view() == stored  # the page was shown the died cell and the notice
