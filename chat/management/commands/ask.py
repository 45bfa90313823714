"""`manage.py ask "question"`: one turn from a terminal, through the worker's path.

The reply streams to stdout, cells and their output as they run; plots are
saved as files whose paths are printed. The conversation is stored like any
other (its id is printed: continue it with --conversation, or open it in the
review pages).
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any, TextIO

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.actions import conversations
from chat.actions.errors import ActionError
from chat.agent.codeact import output_text
from chat.models import Conversation
from chat.worker import headless
from sandbox.api import IMAGE_MIMES, Output

ASK_USER = "terminal"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/svg+xml": "svg"}


class Printer(headless.Observer):
    """Writes a turn to the terminal as it happens."""

    def __init__(self, out: TextIO, err: TextIO, plots: Path, conversation: Conversation) -> None:
        self.out, self.err, self.plots = out, err, plots
        self.conversation = conversation
        self.reply = ""  # the text of the reply under way
        self.shown = ""  # the text of the last reply, once it ended
        self.images = 0

    def reply_text(self, delta: str) -> None:
        self.reply += delta
        self.out.write(delta)
        self.out.flush()

    def reply_finished(self, content: str, final: bool) -> None:
        if self.reply and not self.reply.endswith("\n"):
            self.out.write("\n")
        self.shown, self.reply = self.reply, ""

    def cell_started(self, code: str) -> None:
        self.err.write("--- running ---\n")
        if code.strip() not in self.shown:  # a tool call: the code was not in the text
            self.out.write(code.rstrip() + "\n")
        self.err.flush()

    def cell_output(self, output: Output) -> None:
        saved = self._save_image(output)
        if saved is not None:
            self.out.write(f"[plot saved: {saved}]\n")
            return
        self.out.write(output_text(output))
        self.out.flush()

    def cell_finished(self, status: str, duration: float) -> None:
        self.err.write(f"--- {status} in {duration:.1f} s ---\n")
        self.err.flush()

    def notice(self, code: str, text: str) -> None:
        self.err.write(f"[{text}]\n")

    def _save_image(self, output: Output) -> Path | None:
        data = output.get("data") or {}
        mime = next((m for m in IMAGE_MIMES if m in data), None)
        if mime is None:
            return None
        raw = data[mime]
        content = raw.encode() if mime == "image/svg+xml" else base64.b64decode(raw)
        self.images += 1
        self.plots.mkdir(parents=True, exist_ok=True)
        path = self.plots / f"{self.conversation.pk}-{self.images}.{_EXTENSIONS.get(mime, 'bin')}"
        path.write_bytes(content)
        return path.resolve()


class Command(BaseCommand):
    help = (
        "Ask one question from the terminal: the model answers through the same loop "
        "and sandbox as in the browser, streaming its reply, cells and output here."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--conversation", help="continue this conversation (its id)")
        parser.add_argument(
            "--file",
            action="append",
            default=[],
            metavar="PATH",
            help="upload a file to /workspace first (repeat for several)",
        )
        parser.add_argument("--model", help="the model's key in CODEACT_MODELS")
        parser.add_argument(
            "--user",
            default=ASK_USER,
            help=f"the account a new conversation belongs to (default: {ASK_USER!r}, made "
            "on first use, without a password)",
        )
        parser.add_argument(
            "--plots", default="codeact-plots", help="directory for plots (default %(default)s)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        uploads = [self._read(path) for path in options["file"]]
        conversation = self._conversation(options)
        owner = conversation.owner
        try:
            for name, data in uploads:
                path = headless.add_file(conversation, owner, name, data)
                self.stderr.write(f"[uploaded /workspace/{path}]")
            printer = Printer(sys.stdout, sys.stderr, Path(options["plots"]), conversation)
            result = headless.run_turn(conversation, options["question"], printer)
        except ActionError as exc:
            raise CommandError(exc.message) from None
        except KeyboardInterrupt:
            headless.request_stop(conversation)
            raise
        self.stderr.write(
            f"\nConversation {conversation.pk} (continue it with --conversation {conversation.pk})"
        )
        if result.status == "failed":
            raise CommandError(result.turn.error or result.turn.error_code)

    def _read(self, path: str) -> tuple[str, bytes]:
        try:
            return Path(path).name, Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None

    def _conversation(self, options: dict[str, Any]) -> Conversation:
        model = options["model"]
        if model is not None and conversations.model_config(model)["key"] != model:
            raise CommandError(f"no model {model!r} is configured (see CODEACT_MODELS)")
        if options["conversation"]:
            try:
                conversation = Conversation.objects.select_related("owner").get(
                    pk=options["conversation"], deleted_at__isnull=True
                )
            except (Conversation.DoesNotExist, ValidationError):
                raise CommandError(f"no conversation {options['conversation']}") from None
            if model is not None and model != conversation.model:
                conversation = conversations.do_set_model(conversation, model)
            return conversation
        owner = headless.operator_account(options["user"])
        return headless.new_conversation(owner, model or "")
