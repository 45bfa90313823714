"""Soak: many users chat at once for minutes, with mixed turns (a plain answer,
a one-cell turn, a plot, an upload then its analysis) against the scripted
model, while the resident memory of the web and worker processes is sampled.

    CODEACT_SOAK_SECONDS (default 600) and CODEACT_SOAK_USERS (default 50) size it;
    a quick local run: CODEACT_SOAK_SECONDS=60 CODEACT_SOAK_USERS=10 make test-chaos

Pass: no error, every turn done, every page shows exactly the stored rows, and
after a warm-up minute RSS grows by at most WEB_BOUND / WORKER_BOUND (why these:
see the constants). The RSS table is printed (pytest -s shows it)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from channels.db import database_sync_to_async

from tests.conftest import session_cookie
from tests.factories import ConversationFactory, UserFactory
from tests.support import processes
from tests.support.chaos import App, db_view, rss_mib
from tests.support.page_client import PageClient
from tests.support.scripted_model import Script

SECONDS = int(os.environ.get("CODEACT_SOAK_SECONDS", "600"))
USERS = int(os.environ.get("CODEACT_SOAK_USERS", "50"))
WARMUP = min(60.0, SECONDS / 4)  # sandboxes start, imports and caches fill
SAMPLE_EVERY = 10.0
# Daphne holds one socket per user and no state per turn: after warm-up its memory
# should stay flat. 64 MiB is ~10x the noise seen between samples and is crossed
# by a leak of ~20 KiB per turn over the ~3,000 turns of a full soak.
WEB_BOUND = 64.0
# The worker runs a thread per concurrent turn; each thread's malloc arena grows to
# its high-water mark as turns of every kind pass through it (a plot's PNG is
# ~30 KiB, an upload's copy 2 KiB), which can take more than the warm-up minute to
# reach. 128 MiB allows that and still fails a leak of ~40 KiB per turn.
WORKER_BOUND = 128.0

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.timeout(SECONDS + 900),
]

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('trend')\nplt.show()"
ANALYSE = "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df['sales'].sum())"
CSV = "month,sales\n" + "".join(f"2026-{m:02d},{100 + 10 * m}\n" for m in range(1, 13))
# CODEACT_SOAK_KINDS=plain (say) soaks one kind of turn, to find which one grows memory.
# A conversation holds at most 50 files (each upload of sales.csv is kept as a new
# file): past this many, an upload turn analyses the file already there.
UPLOADS = 40
KINDS = tuple(os.environ.get("CODEACT_SOAK_KINDS", "plain,cell,plot,upload").split(","))


def step(code: str) -> Script:
    return Script(text=f"<execute>\n{code}\n</execute>", delay=0.005)


SCRIPTS: dict[str, Script] = {
    "plain": Script(chunks=[f"w{i} " for i in range(40)], delay=0.02),
    "cell": step("import math\nprint(math.factorial(20))"),
    "plot": step(PLOT),
    "upload": step(ANALYSE),
}
ANSWER = Script(text="Here is what the code found.", delay=0.005)


def route(body: dict[str, Any]) -> Script:
    last = body["messages"][-1]["content"]
    if last.startswith("Execution Output:"):
        return ANSWER
    return next((SCRIPTS[k] for k in KINDS if f"[{k}]" in last), ANSWER)


@dataclass
class User:
    page: PageClient
    conversation_id: str
    kinds: Any  # an endless cycle of turn kinds
    turns: int = 0
    uploads: int = 0
    http: requests.Session = field(default_factory=requests.Session)
    problems: list[str] = field(default_factory=list)


@dataclass
class Sample:
    at: float
    web: float
    worker: float
    turns: int


@pytest.fixture
def app(scripted_server):
    app = App(
        "soak",
        concurrency=USERS + 4,
        env={
            "CODEACT_WORKER_CONCURRENCY": str(USERS + 4),  # sizes the worker's pool too
            "CODEACT_SANDBOXES_PER_HOST": str(USERS + 10),
            "CODEACT_SANDBOX_START_TIMEOUT": "300",  # many sandboxes start at once
            "CODEACT_TURN_LEASE_SECONDS": "30",  # a loaded machine renews late
            "CODEACT_MODEL_READ_TIMEOUT": "60",
            "CODEACT_QUOTA_TURNS_PER_HOUR": "0",  # a soak user sends hundreds
        },
    ).start()
    yield app
    app.stop()


def make_users(port: int) -> list[User]:
    users = []
    for n in range(USERS):
        user = UserFactory(username=f"soak{n}")
        conversation = ConversationFactory(owner=user)
        page = PageClient(port, session_cookie(user), str(conversation.id))
        kinds = itertools.islice(itertools.cycle(KINDS), n % len(KINDS), None)
        users.append(User(page, str(conversation.id), kinds))
    return users


def upload(port: int, user: User) -> None:
    """What the page's upload button does: a multipart POST with the CSRF token of the
    page, which the user loaded once (at their first upload)."""
    base = f"http://127.0.0.1:{port}"
    http = user.http
    # A connection idle for 60 s is closed by Daphne (Twisted's idle timeout); a POST
    # sent on it just as it closes fails with no response. Browsers retry that on a
    # new connection; this client just does not keep connections between uploads.
    http.headers["Connection"] = "close"
    if "csrftoken" not in http.cookies:
        name, value = user.page.cookie.split("=", 1)
        http.cookies.set(name, value)
        http.get(f"{base}/c/{user.conversation_id}/", timeout=60).raise_for_status()
    response = http.post(
        f"{base}/c/{user.conversation_id}/files/",
        files={"file": ("sales.csv", CSV.encode(), "text/csv")},
        headers={"X-CSRFToken": http.cookies["csrftoken"], "Referer": base + "/"},
        timeout=60,
    )
    if response.status_code != 201:
        user.problems.append(f"upload answered {response.status_code}: {response.text[:200]}")


async def chat(port: int, user: User, until: float) -> None:
    await user.page.connect()
    while time.monotonic() < until:
        kind = next(user.kinds)
        if kind == "upload" and user.uploads < UPLOADS:
            await asyncio.to_thread(upload, port, user)
            user.uploads += 1
        await user.page.send({"type": "user_message", "text": f"[{kind}] go"})
        user.turns += 1
        await user.page.pump_until(lambda p, n=user.turns: p.turns_final(n), 300)
        ended = user.page.rows["turn"][max(user.page.rows["turn"])]
        if ended["status"] != "done":
            user.problems.append(f"a {kind} turn ended {ended['status']}: {ended['error']}")
    await user.page.close()
    user.http.close()


async def sample(app: App, users: list[User], samples: list[Sample], stop: asyncio.Event) -> None:
    started = time.monotonic()
    while True:
        web, worker = await asyncio.to_thread(
            lambda: (rss_mib(app.pid("web")), rss_mib(app.pid("worker")))
        )
        samples.append(Sample(time.monotonic() - started, web, worker, sum(u.turns for u in users)))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
            return
        except TimeoutError:
            continue


def table(samples: list[Sample]) -> str:
    lines = [f"{'time s':>7} {'web MiB':>8} {'worker MiB':>10} {'turns':>6}"]
    lines += [f"{s.at:>7.0f} {s.web:>8.1f} {s.worker:>10.1f} {s.turns:>6}" for s in samples]
    return "\n".join(lines)


async def test_a_soak_of_mixed_turns_ends_clean_with_flat_memory(app, model_server, monkeypatch):
    model_server.route = route
    monkeypatch.setattr(model_server, "record", False)  # thousands of requests: keep none
    users = await database_sync_to_async(make_users)(app.port)
    samples: list[Sample] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(app, users, samples, stop))
    until = time.monotonic() + SECONDS
    await asyncio.gather(*(chat(app.port, user, until) for user in users))
    stop.set()
    await sampler

    print(f"\nsoak: {USERS} users, {SECONDS} s, warm-up {WARMUP:.0f} s\n{table(samples)}")
    problems = [p for u in users for p in u.problems]
    assert problems == [], "\n".join(problems)
    assert [e for u in users for e in u.page.errors] == []
    url = processes.test_database_url()
    for user in users:
        stored = await asyncio.to_thread(db_view, url, user.conversation_id)
        assert user.page.view() == stored
        assert set(stored["executions"].values()) <= {("ok",)}  # the upload was there, too
    after = [s for s in samples if s.at >= WARMUP] or samples[-1:]
    base = after[0]
    web_growth = max(s.web for s in after) - base.web
    worker_growth = max(s.worker for s in after) - base.worker
    print(f"growth after warm-up: web {web_growth:+.1f} MiB, worker {worker_growth:+.1f} MiB")
    assert web_growth <= WEB_BOUND, table(samples)
    assert worker_growth <= WORKER_BOUND, table(samples)
