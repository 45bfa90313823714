"""Database connections: which process holds them, and what a request that
cannot get one is told.

Each process has a bounded pool (psycopg's, through Django's
`OPTIONS["pool"]`), sized in settings.py, and names its connections
`codeact-<process>` so `pg_stat_activity` shows who holds what.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings.py imports this module: no Django at import time
    from django.http import HttpRequest, HttpResponse


def process_role(argv: list[str] | None = None) -> str:
    """web, worker, beat, tests, or the management command, read from the
    command line that started this process."""
    args = [Path(a).name for a in (sys.argv if argv is None else argv)]
    program = args[0] if args else ""
    if program == "__main__.py":  # python -m pytest, python -m celery
        program = Path((sys.argv if argv is None else argv)[0]).parent.name
    if program == "daphne" or "runserver" in args[1:2]:
        return "web"
    if program == "celery" or "celery" in args[1:3]:
        return next((a for a in args[1:] if a in ("worker", "beat")), "celery")
    if program in ("pytest", "py.test") or "pytest" in args[1:3]:
        return "tests"
    if program == "manage.py" and len(args) > 1:
        return args[1]
    return "app"


def process_name(argv: list[str] | None = None) -> str:
    """The role, or a Celery worker's node name (`-n worker2@%h` gives worker2),
    so the several workers of `make run` are told apart."""
    args = sys.argv if argv is None else argv
    role = process_role(args)
    if role == "worker" and "-n" in args[:-1]:
        node = args[args.index("-n") + 1].split("@")[0]
        return node or role
    return role


def is_pool_timeout(exc: BaseException | None) -> bool:
    from psycopg_pool import PoolTimeout

    while exc is not None:
        if isinstance(exc, PoolTimeout):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a request that waited CODEACT_DB_POOL_TIMEOUT for a database
    connection is told the server is busy (503, try again), not that it failed."""
    from django.http import HttpResponse
    from django.views import defaults

    if is_pool_timeout(sys.exc_info()[1]):
        response = HttpResponse(
            "The server is busy right now. Please try again in a moment.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = "5"
        return response
    return defaults.server_error(request)


def wait_until_reachable(seconds: float) -> bool:
    """After the database went away: drop this thread's broken connection and get a
    working one, trying for up to `seconds`. True once the database answers."""
    from django.db import DatabaseError, connection

    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(DatabaseError):
            connection.close()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DatabaseError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


# Connections `make run` leaves for everything but its workers: the web process's
# and beat's pools (10 each) and a few for manage.py and an operator's psql.
OTHER_CONNECTIONS = 25


def fitting_concurrency(
    wanted: int, workers: int, max_connections: int, reserved: int, in_use: int = 0
) -> int:
    """The most threads per worker whose pools (threads + 4 connections each) fit
    in PostgreSQL's slots beside the rest of the app; at least 1."""
    free = max_connections - reserved - in_use - OTHER_CONNECTIONS
    per_worker = free // max(1, workers) - 4
    return max(1, min(wanted, per_worker))
