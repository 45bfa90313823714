"""List this deployment's sandbox containers, and stop some or all of them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from chat.worker import hosts, pool


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


class Command(BaseCommand):
    help = (
        "List this deployment's sandbox containers (state, conversation, owner, age, idle), "
        "or stop them: --stop ID [ID ...] or --all. Files stay in PostgreSQL and come back "
        "in a new sandbox on the conversation's next execution; variables are lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stop", nargs="+", metavar="ID", help="container ids (or prefixes)")
        parser.add_argument("--all", action="store_true", help="stop every sandbox")
        parser.add_argument("--quiet", action="store_true", help="print only the summary")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["stop"] and options["all"]:
            raise CommandError("Give either --stop ID ... or --all, not both.")
        if options["all"] or options["stop"]:
            stopped = pool.stop_sandboxes(None if options["all"] else options["stop"])
            if options["stop"] and not stopped:
                raise CommandError("No sandbox of this deployment matches those ids.")
            self.stdout.write(f"Stopped {stopped} sandbox{'es' if stopped != 1 else ''}.")
            return
        listed = pool.list_sandboxes()
        if not options["quiet"]:
            self._table(listed)
        self.stdout.write(
            f"{len(listed)} sandbox{'es' if len(listed) != 1 else ''} "
            f"(host cap {settings.CODEACT_SANDBOXES_PER_HOST})."
        )
        down = hosts.down()
        addresses = hosts.addresses()
        if len(addresses) > 1 or down:
            for address in addresses:
                state = "down" if address in down else "up"
                self.stdout.write(f"host {hosts.label(address)}: {state}")

    def _table(self, listed: list[pool.Listed]) -> None:
        now = timezone.now()
        rows = [("CONTAINER", "STATE", "CONVERSATION", "OWNER", "AGE", "IDLE", "RUNTIME", "HOST")]
        for item in listed:
            record = item.record
            host = hosts.label(item.host)
            if record is None:
                rows.append(
                    (item.container_id[:12], f"orphan ({item.status})", "", "", "", "", "", host)
                )
                continue
            idle = (now - record.last_used_at).total_seconds() if record.last_used_at else None
            rows.append(
                (
                    item.container_id[:12],
                    record.state if item.status == "running" else f"{record.state} ({item.status})",
                    str(record.conversation_id or ""),
                    record.owner.get_username() if record.owner else "",
                    _duration(item.age_seconds),
                    _duration(idle) if idle is not None else "",
                    record.runtime or "runc",
                    host,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
