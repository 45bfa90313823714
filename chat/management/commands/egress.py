"""Set up and run the egress proxy that gives sandboxes web access (CODEACT_EGRESS=proxy)."""

from __future__ import annotations

import os
import shutil
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.worker import egress, pool


class Command(BaseCommand):
    help = (
        "Web access for sandboxes: `setup` makes the internal Docker network, the firewall "
        "rules for its bridge and Squid's configuration; `run` does that and then runs Squid "
        "in the foreground (what `make run` starts); `config` prints the configuration."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["setup", "run", "config"])

    def handle(self, *args: Any, **options: Any) -> None:
        if not egress.enabled():
            raise CommandError("Web access is off: set CODEACT_EGRESS=proxy to use the proxy.")
        squid = shutil.which("squid")
        if squid is None:
            raise CommandError("Squid is not installed (Debian: apt-get install squid).")
        try:
            chosen, path = egress.prepare(pool.docker_engine())
        except (egress.EgressUnavailable, ValueError) as exc:  # ValueError: a bad domain or network
            raise CommandError(str(exc)) from exc
        if options["action"] == "config":
            with open(path, encoding="utf-8") as config:
                self.stdout.write(config.read())
            return
        self.stdout.write(
            f"Egress proxy for sandboxes on {settings.CODEACT_EGRESS_NETWORK}: {chosen.proxy_url} "
            f"(configuration {path})"
        )
        if options["action"] == "run":
            # -N: stay in the foreground; the supervisor (make run) stops it with SIGTERM.
            os.execv(squid, [squid, "-N", "-f", path])
