"""Database connections are bounded per process: a real Daphne process with a
small pool serves more concurrent requests than it has connections, on a
database that refuses any connection beyond them."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection, transaction
from websockets.asyncio.client import connect

from codeact_web.database import process_name, process_role
from tests.conftest import session_cookie
from tests.factories import ConversationFactory
from tests.support import processes
from tests.support.processes import Process, free_port, start_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

POOL = 3
SMALL_POOL = {"CODEACT_DB_POOL_SIZE": "1", "CODEACT_DB_POOL_TIMEOUT": "0.5"}


def get(port: int, cookie: str, timeout: float = 30) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Cookie": cookie})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def scalar(sql: str, *params: object) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.fetchone()[0])


def web_connections() -> int:
    return scalar(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'codeact-web'"
    )


@contextmanager
def connection_limit(extra: int) -> Iterator[None]:
    """The test database accepts the connections open now and `extra` more."""
    name = connection.settings_dict["NAME"]
    open_now = scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT {open_now + extra}')
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')


@pytest.fixture
def web(request) -> Iterator[int]:
    port = free_port()
    env = {"CODEACT_DB_POOL_SIZE": str(POOL)} | getattr(request, "param", {})
    proc: Process = start_web(port, **env)
    yield port
    proc.stop()


def test_it_serves_more_concurrent_requests_than_connections_without_a_500(web, owner):
    cookie = session_cookie(owner)
    assert get(web, cookie)[0] == 200  # the pool has opened its first connection
    with connection_limit(POOL - web_connections()), ThreadPoolExecutor(24) as threads:
        answers = list(threads.map(lambda _: get(web, cookie), range(72)))
        held = web_connections()

    statuses = sorted({status for status, _ in answers})
    assert statuses == [200], [body[:300] for status, body in answers if status != 200][:3]
    assert 1 <= held <= POOL  # named, so an operator sees who holds what


def test_the_pooled_connections_a_database_restart_killed_fail_no_request(web, owner):
    """A restart (here: every backend of the web process terminated) leaves dead
    connections in the pool; each is checked as it leaves it, and replaced."""
    cookie = session_cookie(owner)
    with ThreadPoolExecutor(POOL) as threads:  # open several pooled connections
        assert {s for s, _ in threads.map(lambda _: get(web, cookie), range(12))} == {200}
    killed = scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'codeact-web'"
    )
    assert killed >= 1
    answers = [get(web, cookie) for _ in range(POOL + 2)]
    assert [status for status, _ in answers] == [200] * (POOL + 2), answers[0][1][:300]


@pytest.mark.parametrize("web", [SMALL_POOL], indirect=True)
def test_it_answers_503_when_no_connection_frees_up_in_time(web, owner):
    cookie = session_cookie(owner)
    assert get(web, cookie)[0] == 200
    with ThreadPoolExecutor(1) as threads, transaction.atomic():
        # The web process's only connection waits on this lock; the next request
        # finds the pool empty.
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE django_session IN ACCESS EXCLUSIVE MODE")
        first = threads.submit(get, web, cookie)
        wait_for_lock_waiter()
        status, body = get(web, cookie)
        transaction.set_rollback(True)

    assert status == 503
    assert "busy" in body
    assert first.result()[0] == 200


@pytest.mark.parametrize("web", [SMALL_POOL], indirect=True)
def test_a_socket_frame_that_gets_no_connection_in_time_is_told_busy(web, owner):
    conversation = ConversationFactory(owner=owner)
    cookie = session_cookie(owner)
    url = f"ws://127.0.0.1:{web}/ws/conversations/{conversation.id}/"

    async def talk() -> tuple[dict, dict]:
        headers = {"Cookie": cookie}
        origin = f"http://127.0.0.1:{web}"
        async with (
            connect(url, origin=origin, additional_headers=headers) as held,
            connect(url, origin=origin, additional_headers=headers) as waiting,
        ):
            await held.recv(), await waiting.recv()  # hello, hello
            await sync_to_async(lock_sessions_until_released)()
            await held.send(json.dumps({"type": "ping"}))  # takes the only connection, waits
            await database_sync_to_async(wait_for_lock_waiter)()
            await waiting.send(json.dumps({"type": "ping"}))
            busy = json.loads(await asyncio.wait_for(waiting.recv(), 15))
            await sync_to_async(release_sessions)()
            return busy, json.loads(await asyncio.wait_for(held.recv(), 15))

    busy, pong = asyncio.run(talk())
    assert busy["type"] == "error" and busy["code"] == "busy" and "busy" in busy["message"]
    assert pong == {"type": "pong"}


_locker: dict[str, Any] = {}


def lock_sessions_until_released() -> None:
    """Hold an exclusive lock on the session table from a connection of our own."""
    conn = psycopg.connect(processes.test_database_url(), autocommit=False)
    conn.execute("LOCK TABLE django_session IN ACCESS EXCLUSIVE MODE")
    _locker["conn"] = conn


def release_sessions() -> None:
    conn = _locker.pop("conn")
    conn.rollback()
    conn.close()


def wait_for_lock_waiter(timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ):
            return
        time.sleep(0.05)
    raise AssertionError("the web process never waited on the lock")


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/x/.venv/bin/daphne", "-b", "0.0.0.0", "codeact_web.asgi:application"], "web"),
        (["/x/.venv/bin/celery", "-A", "codeact_web", "worker", "-P", "threads"], "worker"),
        (["celery", "-A", "codeact_web", "beat", "-l", "INFO"], "beat"),
        (["manage.py", "migrate"], "migrate"),
        (["manage.py", "runserver"], "web"),
        (["/x/site-packages/pytest/__main__.py", "tests/"], "tests"),
        (["/x/site-packages/celery/__main__.py", "-A", "codeact_web", "beat"], "beat"),
    ],
)
def test_it_names_each_process_for_pg_stat_activity(argv, role):
    assert process_role(argv) == role


def test_it_tells_the_workers_of_make_run_apart():
    argv = ["celery", "-A", "codeact_web", "worker", "-c", "32", "-n", "worker2@%h"]
    assert (process_role(argv), process_name(argv)) == ("worker", "worker2")
    assert process_name(["daphne", "codeact_web.asgi:application"]) == "web"
