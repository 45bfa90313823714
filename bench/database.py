"""A database of the bench's own, on the app's PostgreSQL server.

The app's database holds the app's warm sandboxes and conversations once `make
run` has used it: a bench working there would claim the app's sandboxes and
count the app's rows. `use_own_database` creates a database for this run and
points DATABASE_URL at it (before Django is set up); `drop_own_database`
removes it and every sandbox the bench left.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

APP_DATABASE = os.environ.get("DATABASE_URL", "postgres://codeact:codeact@127.0.0.1:5432/codeact")
NAME = f"codeact_bench_{os.getpid()}"


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(APP_DATABASE, autocommit=True) as conn:
        conn.execute(sql)


def use_own_database() -> None:
    """Create this run's database and make it the one Django will use."""
    _admin(f'CREATE DATABASE "{NAME}"')
    os.environ["DATABASE_URL"] = urlunsplit(urlsplit(APP_DATABASE)._replace(path=f"/{NAME}"))


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drop_own_database() -> None:
    """Remove the sandboxes the bench left, then its database."""
    from django.db import connections

    from chat.models import SandboxRecord
    from chat.worker import pool

    try:
        for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
            pool.remove(record, "bench")
    finally:
        connections.close_all()
        _admin(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
