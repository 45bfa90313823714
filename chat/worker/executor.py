"""A conversation's code executor: its sandbox, its files, and what was lost.

Claims the sandbox on the first execution of a turn, puts the conversation's
files into it, runs the code, and keeps the files the code wrote. When the
sandbox is new although the conversation ran code before (it was reaped
after idling, or it died), the model and the user are told that variables
are gone and the files were restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from chat.actions import files
from chat.actions.errors import ActionError
from chat.agent.loop import Executed
from chat.models import Execution, SandboxRecord, Turn, WebRequest, WorkspaceFile
from chat.worker import egress, pool
from sandbox.api import FileInfo, OnOutput, Sandbox, SandboxError
from sandbox.egress import WebRequest as ProxyRecord

log = logging.getLogger(__name__)
CAPTURE_PER_EXECUTION = 20  # more new files than this in one cell are not all kept

STATE_LOST = (
    "[Note: this is a new Python session. Variables and imports from earlier in this "
    "conversation are gone (the previous session was shut down after a period without "
    "use, or it stopped). The files in /workspace were restored.]"
)
STATE_LOST_NOTICE = (
    "The Python session of this conversation was restarted, so variables from earlier "
    "messages are gone. Your files were restored."
)
WEB_ACCESS_CHANGED = (
    "[Note: web access was switched {state} for this conversation, so this is a new Python "
    "session: variables and imports from earlier are gone. The files in /workspace were "
    "restored.]"
)
WEB_ACCESS_CHANGED_NOTICE = (
    "Web access was switched {state}, which needs a new Python session: variables from "
    "earlier messages are gone. Your files were restored."
)
# Requests kept per cell: the proxy's rate limit bounds them; this bounds the rows
# a cell can add if the limit is set high.
WEB_REQUESTS_PER_EXECUTION = 500
# The proxy logs a request once it has ended, a moment after the code saw its reply.
WEB_LOG_SETTLE = 0.2
LOST_CELL_NOTE = (
    "[Note: an earlier execution was cut off when its worker stopped; it was "
    "interrupted, not run again.]"
)


def _hidden(path: str) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in path.split("/"))


class ConversationExecutor:
    """Runs one turn's code in its conversation's sandbox."""

    def __init__(self, turn: Turn, on_notice: Callable[[str, str], None]) -> None:
        self.turn = turn
        self.conversation = turn.conversation
        self.on_notice = on_notice
        self.sandbox: Sandbox | None = None
        self.record: SandboxRecord | None = None
        self.missing: set[str] = set()  # files that did not fit, already reported

    def execute(
        self, execution: Execution, on_output: OnOutput, poll: Callable[[], bool]
    ) -> Executed:
        """Run the execution's code; keep the files it wrote against that execution."""
        notes = self._ensure_sandbox()
        try:
            notes += self._put_files()
        except SandboxError:
            if self.sandbox is None or self.sandbox.alive:
                raise
            # The stream to the sandbox ended before the cell started (seen once in a
            # soak of 5,000 turns): nothing of the cell ran, so attach again -- to the
            # same kernel if it is still there, else to a new sandbox -- and go on.
            log.warning("%s: the sandbox's stream ended before the cell; attaching again",
                        self.conversation.pk)  # fmt: skip
            notes += self._ensure_sandbox()
            notes += self._put_files()
        assert self.sandbox is not None and self.record is not None
        result = self.sandbox.execute(execution.code, on_output, poll=poll)
        pool.touch(self.record)
        web = self._web_requests(execution)
        new_files: list[str] = []
        if result.status == "died":
            # The container is gone; the next execution starts a new one with the files.
            pool.remove(self.record, "died")
            self.close()
        else:
            new_files = self._capture_files(execution)
        return Executed(result, notes=notes, new_files=new_files, web=web)

    def _web_requests(self, execution: Execution) -> list[ProxyRecord]:
        """Store the requests the proxy logged for this sandbox since the last cell."""
        assert self.record is not None
        address = self.record.egress_address
        if not address:
            return []
        taken = egress.take_requests(address)
        time.sleep(WEB_LOG_SETTLE)
        taken += egress.take_requests(address)
        kept = taken[:WEB_REQUESTS_PER_EXECUTION]
        WebRequest.objects.bulk_create(
            [
                WebRequest(
                    conversation=self.conversation,
                    execution=execution,
                    at=datetime.fromtimestamp(item.at, tz=UTC),
                    method=item.method,
                    host=item.host,
                    port=item.port,
                    url=item.url,
                    status=item.status,
                    refused=bool(item.refusal),
                    outcome=item.outcome[:80],
                    error=item.error,
                    reply_bytes=item.reply_bytes,
                    request_bytes=item.request_bytes,
                    duration_ms=item.duration_ms,
                    server=item.server,
                )
                for item in kept
            ]
        )
        return taken

    def _ensure_sandbox(self) -> list[str]:
        if self.sandbox is not None and self.sandbox.alive:
            return []
        self.close()
        claim = pool.claim_for(self.conversation)
        self.sandbox, self.record = claim.sandbox, claim.record
        notes: list[str] = []
        earlier = Execution.objects.filter(conversation=self.conversation).exclude(
            turn=self.turn, status=Execution.Status.RUNNING
        )
        if claim.replaced == "web_access":
            state = "on" if self.record.egress_address else "off"
            notes.append(WEB_ACCESS_CHANGED.format(state=state))
            self.on_notice("state_lost", WEB_ACCESS_CHANGED_NOTICE.format(state=state))
        elif claim.fresh and earlier.exists():
            notes.append(STATE_LOST)
            self.on_notice("state_lost", STATE_LOST_NOTICE)
        elif not claim.fresh:
            last = earlier.order_by("-id").only("status").first()
            if last is not None and last.status == Execution.Status.LOST:
                # Its cell may still be running in the kernel: stop it first.
                self.sandbox.interrupt()
                notes.append(LOST_CELL_NOTE)
        return notes

    def _put_files(self) -> list[str]:
        """Bring the sandbox up to date with the stored files: remove what the user
        deleted, restore what it lacks (streamed from the database, a piece at a
        time). A file that does not fit (the workspace is full) is left out, and
        the model and the user are told which, once per turn."""
        assert self.sandbox is not None and self.record is not None
        for path in files.pending_deletions(self.conversation, self.record.pk):
            self.sandbox.delete_file(path)
            files.deletion_done(self.conversation, self.record.pk, path)
        stale = (
            WorkspaceFile.objects.filter(conversation=self.conversation)
            .exclude(sandbox=self.record)
            .only("pk", "path", "size", "conversation_id")
            .order_by("-updated_at")  # the newest first, while there is room
        )
        put: dict[str, WorkspaceFile] = {}
        missing: list[str] = []
        for file in stale:
            try:
                self.sandbox.put_file(file.path, files.content_chunks(file.pk))
                put[file.path] = file
            except SandboxError as exc:
                if not self.sandbox.alive:
                    raise  # not a full workspace: the sandbox is gone (see execute)
                log.info("could not restore %s: %s", file.path, exc.message)
                missing.append(file.path)
                # A part-written copy must neither fill the space nor be captured
                # later as a new version of the stored file.
                with contextlib.suppress(SandboxError):
                    self.sandbox.delete_file(file.path)
        if put:
            # Remember the mtimes they got, so only later changes count as new.
            for info in self.sandbox.list_files():
                if info.path in put:
                    files.mark_in_sandbox(put[info.path], self.record.pk, info.mtime_ns)
        return self._report_missing(missing)

    def _report_missing(self, missing: list[str]) -> list[str]:
        new = [path for path in missing if path not in self.missing]
        if not new:
            return []
        self.missing.update(new)
        names = ", ".join(sorted(new))
        self.on_notice(
            "files_not_restored",
            f"These files could not be put back into the Python session: {names}. The "
            "workspace is full (or a file is too large for it). They are still stored here; "
            "delete some files to make room.",
        )
        return [f"[Note: these files could not be restored into /workspace (it is full): {names}.]"]

    def _changed_files(self, listed: list[FileInfo]) -> list[FileInfo]:
        """Files new or changed since this sandbox last held them, newest first."""
        assert self.record is not None
        known = {
            f.path: f
            for f in WorkspaceFile.objects.filter(conversation=self.conversation).only(
                "path", "size", "mtime_ns", "sandbox_id"
            )
        }
        limit = files.capture_max_bytes()
        changed = [
            info
            for info in listed
            if not _hidden(info.path)
            and info.size <= limit
            and info.path not in self.missing
            and not (
                info.path in known
                and known[info.path].sandbox_id == self.record.pk
                and known[info.path].mtime_ns == info.mtime_ns
                and known[info.path].size == info.size
            )
        ]
        return sorted(changed, key=lambda info: info.mtime_ns, reverse=True)

    def _capture_files(self, execution: Execution) -> list[str]:
        assert self.sandbox is not None and self.record is not None
        try:
            listed = self.sandbox.list_files()
        except SandboxError:
            log.warning("could not list the files of %s", self.record.container_id[:12])
            return []
        saved: list[str] = []
        for info in self._changed_files(listed)[:CAPTURE_PER_EXECUTION]:
            try:
                # The file may have grown since it was listed: read no more than is kept.
                data = self.sandbox.get_file(info.path, max_bytes=files.capture_max_bytes())
                file = files.do_capture_file(
                    execution, info.path, data, info.mtime_ns, self.record.pk
                )
            except (SandboxError, ActionError) as exc:
                log.info("not keeping %s: %s", info.path, exc)
                continue
            if file is not None:
                saved.append(info.path)
        return sorted(saved)

    def close(self) -> None:
        """Let go of the sandbox (it stays up for the conversation's next turn)."""
        if self.sandbox is not None:
            self.sandbox.detach()
        self.sandbox = None
        self.record = None

    @staticmethod
    def limits() -> dict[str, object]:
        """The limits a cell runs under, as recorded with each execution."""
        return dataclasses.asdict(pool.limits())
