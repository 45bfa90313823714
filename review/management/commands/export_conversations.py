"""Export conversations for audit or fine-tuning; every run is audited.

manage.py export_conversations --format jsonl --rating up --output train.jsonl
manage.py export_conversations --format json --flagged --since 2026-11-01 -o flagged.json
manage.py export_conversations --format ipynb --user alice --output notebooks/
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from chat import exports
from chat.models import Conversation
from review import datasets
from review.audit import record
from review.downloads import EXPORT_ACTIONS
from review.queries import day_bounds, has_errors, rating_filter


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (use YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = (
        "Export conversations as full JSON, Jupyter notebooks or CodeAct training JSONL. "
        "Filters combine; each run is recorded in the audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=sorted(EXPORT_ACTIONS), required=True)
        parser.add_argument(
            "-o",
            "--output",
            default="-",
            help="a file ('-' for standard output); for ipynb, a directory",
        )
        parser.add_argument("--conversation", action="append", default=[], help="an id; repeat")
        parser.add_argument("--user", help="owner's username")
        parser.add_argument("--model", help="the conversation's model key")
        parser.add_argument("--since", type=_day, help="last activity on or after YYYY-MM-DD")
        parser.add_argument("--until", type=_day, help="last activity on or before YYYY-MM-DD")
        flag = parser.add_mutually_exclusive_group()
        flag.add_argument("--flagged", action="store_true", help="only flagged conversations")
        flag.add_argument("--not-flagged", action="store_true", help="only unflagged ones")
        parser.add_argument("--rating", choices=["up", "down", "rated", "unrated"])
        parser.add_argument("--errors", action="store_true", help="only conversations with errors")
        parser.add_argument(
            "--with-files", action="store_true", help="json: include workspace file contents"
        )
        parser.add_argument(
            "--actor",
            default=os.environ.get("CODEACT_EXPORT_ACTOR") or f"command:{getpass.getuser()}",
            help="the name recorded in the audit log",
        )

    def select(self, options: dict[str, Any]) -> QuerySet[Conversation]:
        qs = Conversation.objects.select_related("owner", "flagged_by").order_by("created_at")
        if options["conversation"]:
            qs = qs.filter(pk__in=options["conversation"])
        if options["user"]:
            qs = qs.filter(owner__username=options["user"])
        if options["model"]:
            qs = qs.filter(model=options["model"])
        if options["since"]:
            qs = qs.filter(updated_at__gte=day_bounds(options["since"])[0])
        if options["until"]:
            qs = qs.filter(updated_at__lt=day_bounds(options["until"])[1])
        if options["flagged"]:
            qs = qs.filter(flagged=True)
        if options["not_flagged"]:
            qs = qs.filter(flagged=False)
        if options["rating"]:
            qs = qs.filter(rating_filter(options["rating"]))
        if options["errors"]:
            qs = qs.filter(has_errors())
        return qs

    def handle(self, *args: Any, **options: Any) -> None:
        fmt = options["format"]
        try:
            rows = list(self.select(options))
        except (ValueError, ValidationError) as exc:  # a malformed conversation id
            raise CommandError(f"Could not select conversations: {exc}") from None
        filters = {
            k: str(v)
            for k, v in options.items()
            if k
            in (
                "user",
                "model",
                "since",
                "until",
                "flagged",
                "not_flagged",
                "rating",
                "errors",
                "with_files",
            )
            and v
        }
        written = self.write(fmt, rows, options)
        record(
            options["actor"],
            EXPORT_ACTIONS[fmt],
            rows,
            via="command",
            detail={"format": fmt, "filters": filters, "written": written},
        )
        self.stderr.write(f"Exported {written} of {len(rows)} selected conversation(s) as {fmt}.")

    def write(self, fmt: str, rows: list[Conversation], options: dict[str, Any]) -> int:
        output = options["output"]
        if fmt == "ipynb":
            if output == "-":
                raise CommandError(
                    "--format ipynb writes one file per conversation: give --output DIR"
                )
            folder = Path(output)
            folder.mkdir(parents=True, exist_ok=True)
            for conversation in rows:
                name = f"{exports.export_stem(conversation)}-{str(conversation.id)[:8]}.ipynb"
                (folder / name).write_text(exports.notebook_json(conversation), encoding="utf-8")
            return len(rows)
        if fmt == "json":
            stamp = timezone.now().isoformat()
            chunks = datasets.json_chunks(rows, stamp, with_files=options["with_files"])
            count = len(rows)
        else:
            lines = list(datasets.jsonl_lines(rows))
            chunks, count = iter(lines), len(lines)
        if output == "-":
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
        else:
            tmp = Path(f"{output}.partial")
            with tmp.open("w", encoding="utf-8") as f:
                for chunk in chunks:
                    f.write(chunk)
            tmp.replace(output)  # never leave a half-written export under the real name
        return count
