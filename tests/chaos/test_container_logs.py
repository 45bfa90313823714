"""A cell cannot fill the host's disk through the engine's container logs.

It writes 200 MiB to the bridge's stderr (/proc/1/fd/2, PID 1 of the container)
and to its own file descriptor 2. The engine's directory for the container
must not grow past the log driver's cap (no log at all with the `none`
driver), and the sandbox keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat.models import SandboxRecord
from sandbox.docker_backend import docker_client
from tests.conftest import session_cookie
from tests.factories import ConversationFactory, UserFactory
from tests.support import processes
from tests.support.chaos import App, db_view, scalar
from tests.support.page_client import FINAL, PageClient
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.chaos]

MiB = 1 << 20
FLOOD = """
import os
chunk = b"x" * (1 << 20)
for target in ("/proc/1/fd/2", 2):
    try:
        fd = os.open(target, os.O_WRONLY) if isinstance(target, str) else target
        for _ in range(100):
            os.write(fd, chunk)
        print(target, "written", flush=True)
    except OSError as exc:
        print(target, "refused:", exc.strerror, flush=True)
"""
BIG_PRINT = """
print("header", flush=True)
for row in range(20_000):
    print(f"{row:>8} " + "x" * 100)
"""


def step(code: str) -> Script:
    return Script(text=f"<execute>\n{code}\n</execute>")


@pytest.fixture
def app(scripted_server):
    app = App("logs", env={"CODEACT_CELL_TIMEOUT": "120"}).start()
    yield app
    app.stop()


def dir_bytes(path: str) -> int:
    total = 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


def log_cap(config: dict[str, Any]) -> int:
    """The most the log driver keeps for one container, in bytes."""
    if config["Type"] == "none":
        return 0
    opts = config.get("Config") or {}
    assert "max-size" in opts, f"the {config['Type']} log driver is not capped: {config}"
    size = opts["max-size"].lower()
    units = {"k": 1 << 10, "m": MiB, "g": 1 << 30}
    bytes_ = int(float(size[:-1]) * units[size[-1]]) if size[-1] in units else int(size)
    return bytes_ * int(opts.get("max-file", "1"))


def turns_in_db(conversation_id: str) -> list[str]:
    view = db_view(processes.test_database_url(), conversation_id)
    return [status for status, _code in view["turns"].values()]


async def wait_final(conversation_id: str, count: int, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        statuses = await asyncio.to_thread(turns_in_db, conversation_id)
        if len(statuses) >= count and all(s in FINAL for s in statuses):
            return statuses
        assert loop.time() < deadline, f"turns not final: {statuses}"
        await asyncio.sleep(0.5)


def make_page(port: int, name: str) -> PageClient:
    user = UserFactory(username=name)
    conversation = ConversationFactory(owner=user)
    return PageClient(port, session_cookie(user), str(conversation.id))


def conversation_of(page: PageClient) -> str:
    return page.url.rstrip("/").rsplit("/", 1)[1]


async def test_a_cell_flooding_stderr_does_not_grow_the_container_log(app, model_server):
    page = await database_sync_to_async(make_page)(app.port, "flooder")
    conversation_id = conversation_of(page)
    await page.connect()
    model_server.push(step("print('ready')"), Script(text="Ready."))
    await page.send({"type": "user_message", "text": "Start"})
    await page.pump_until(lambda p: p.turns_final(1), 120)

    record = await database_sync_to_async(SandboxRecord.objects.get)(
        conversation_id=conversation_id, state="claimed"
    )
    client = docker_client()
    info = client.api.inspect_container(record.container_id)
    container_dir = os.path.join(client.info()["DockerRootDir"], "containers", info["Id"])
    config = info["HostConfig"]["LogConfig"]
    cap = log_cap(config)
    if config["Type"] == "none":
        assert info["LogPath"] == ""  # nothing is written anywhere
    before = dir_bytes(container_dir)

    model_server.push(step(FLOOD), Script(text="Flooded."))
    await page.send({"type": "user_message", "text": "Flood the logs"})
    await page.close()  # the page's own resync is another test's subject
    assert await wait_final(conversation_id, 2, 180) == ["done", "done"]
    grown = dir_bytes(container_dir) - before
    # Room for the engine's own files (hostname, config) beside the capped log.
    assert grown <= cap + MiB, f"the container's directory grew by {grown / MiB:.1f} MiB"
    assert cap <= 64 * MiB, f"each sandbox may keep {cap / MiB:.0f} MiB of logs"

    # The sandbox and the app are fine: the next cell runs in the same session. The
    # page is loaded afresh: it starts from the sequence number the HTML carried.
    page = PageClient(app.port, page.cookie, conversation_id)
    page.last_seq = await asyncio.to_thread(
        scalar, processes.test_database_url(),
        "SELECT last_seq FROM chat_conversation WHERE id = %s", conversation_id,
    )  # fmt: skip
    await page.connect()
    model_server.push(step("print('alive')"), Script(text="Alive."))
    await page.send({"type": "user_message", "text": "Still there?"})
    await page.pump_until(lambda p: p.turns_final(1), 120)
    await page.close()
    assert [t["status"] for t in page.rows["turn"].values()] == ["done"]
    assert [o["text"] for o in page.rows["output"].values()] == ["alive\n"]
    assert await wait_final(conversation_id, 3, 10) == ["done"] * 3


async def test_a_page_resyncs_after_a_cell_filled_its_output_cap(app, model_server):
    """A page whose socket dropped while a cell printed a lot (2 MiB: a big table)
    reconnects and catches up: the kept output (up to the cell's cap) must reach
    it, however large the resync."""
    page = await database_sync_to_async(make_page)(app.port, "printer")
    conversation_id = conversation_of(page)
    await page.connect()
    model_server.push(step(BIG_PRINT), Script(text="Printed."))
    await page.send({"type": "user_message", "text": "Print a big table"})
    await page.pump_until(lambda p: any(o["text"] for o in p.rows["output"].values()), 120)
    await page.close()  # the network drops
    page.ws = None
    assert await wait_final(conversation_id, 1, 120) == ["done"]
    await page.pump_until(lambda p: p.turns_final(1), 30)  # reconnects and resyncs
    await page.close()
    stored = await asyncio.to_thread(db_view, processes.test_database_url(), conversation_id)
    assert page.view() == stored
    assert page.frames_in_parts >= 1, "the resync was over one websocket message"
