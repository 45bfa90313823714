"""A container's health check: exit 0 when what this process needs answers, else 1
with one line per failed check.

Not the web's /health/ready, which also depends on the workers' reports: a web
container is healthy when it reaches PostgreSQL and Redis, a worker container when
it also reaches its Docker engine and every model endpoint.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from codeact_web.health import run_checks, web_checks


class Command(BaseCommand):
    help = (
        "Check PostgreSQL and Redis (--role worker: also the Docker engine and the model "
        "endpoints), each within CODEACT_HEALTH_TIMEOUT; exit 1 and name each failure."
    )
    # Run every few seconds by Docker: Django's system checks would cost more than
    # the health checks themselves.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", choices=["web", "worker"], default="web")

    def handle(self, *args: Any, **options: Any) -> None:
        checks = web_checks()
        if options["role"] == "worker":
            from chat.worker.probes import worker_checks

            checks += worker_checks()
        results = asyncio.run(run_checks(checks))
        failed = [result for result in results if result.error]
        for result in failed:
            self.stderr.write(f"{result.check!r}: {result.error}")
        if failed:
            raise SystemExit(1)
        self.stdout.write(f"ok: {', '.join(repr(result.check) for result in results)}")
