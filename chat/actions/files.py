"""Workspace files: uploads and what the code writes, stored in PostgreSQL.

The bytes are never unpacked or parsed on the host; the sandbox gets them
back when it is new. The size limits of files live here.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum

from chat.actions import quotas
from chat.actions.errors import ActionError
from chat.broadcast import publish_on_commit
from chat.models import Conversation, Execution, FileDeletion, SandboxRecord, Turn, WorkspaceFile
from chat.serialize import file_deleted_event, file_event

MiB = 1 << 20

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def safe_name(name: str) -> str:
    """A plain file name made from whatever the browser sent: no folders, no
    hidden files, only letters, digits, dot, dash and underscore."""
    base = PurePosixPath(name.replace("\\", "/")).name
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem.strip("."):  # no suffix, or a hidden file like .bashrc
        stem, suffix = base, ""
    stem = _UNSAFE.sub("_", _ascii(stem)).strip("._-")[:80] or "upload"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", _ascii(suffix))[:16]
    return f"{stem}.{suffix}" if suffix else stem


def _unused_name(conversation: Conversation, name: str) -> str:
    taken = set(conversation.files.values_list("path", flat=True))
    if name not in taken:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    for n in range(2, 10_000):
        candidate = f"{stem}-{n}.{suffix}" if suffix else f"{stem}-{n}"
        if candidate not in taken:
            return candidate
    raise ActionError("too_many_files", "This conversation has too many files with that name.")


def upload_max_bytes() -> int:
    """The largest file a user may upload."""
    return int(settings.CODEACT_UPLOAD_MAX_MB) * MiB


def capture_max_bytes() -> int:
    """The largest file written by code that is kept for download."""
    return int(settings.CODEACT_CAPTURE_MAX_MB) * MiB


def check_upload_size(size: int) -> None:
    if size > upload_max_bytes():
        raise ActionError(
            "file_too_large",
            f"The file is {size / MiB:.1f} MB; uploads are limited to "
            f"{settings.CODEACT_UPLOAD_MAX_MB} MB each.",
        )


def _check_room(
    conversation: Conversation, size: int, replacing: WorkspaceFile | None = None
) -> None:
    """There is room for a file of `size` bytes (in place of `replacing`, if given)."""
    files = conversation.files.all()
    if replacing is None and files.count() >= settings.CODEACT_FILES_PER_CONVERSATION:
        raise ActionError(
            "too_many_files",
            f"A conversation can hold {settings.CODEACT_FILES_PER_CONVERSATION} files; "
            "start a new conversation for more.",
        )
    # The owner's quota across conversations counts what the file adds.
    quotas.check_stored_bytes(conversation.owner_id, size - (replacing.size if replacing else 0))
    if replacing is not None:
        files = files.exclude(pk=replacing.pk)
    used = files.aggregate(total=Sum("size"))["total"] or 0
    room = settings.CODEACT_FILES_MB_PER_CONVERSATION * MiB
    if used + size > room:
        raise ActionError(
            "files_full",
            f"The files of this conversation would exceed "
            f"{settings.CODEACT_FILES_MB_PER_CONVERSATION} MB in total.",
        )


def do_upload_file(conversation: Conversation, user: Any, name: str, data: bytes) -> WorkspaceFile:
    """Store an uploaded file under a safe, unused name; the next execution sees it."""
    check_upload_size(len(data))
    with transaction.atomic():
        seq = conversation.next_seq()  # locks the conversation: names and limits hold
        _check_room(conversation, len(data))
        file = WorkspaceFile.objects.create(
            conversation=conversation,
            path=_unused_name(conversation, safe_name(name)),
            origin=WorkspaceFile.Origin.UPLOAD,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content=data,
            uploaded_by=user,
            seq=seq,
        )
        publish_on_commit(conversation.id, file_event(file))
    return file


def do_capture_file(
    execution: Execution, path: str, data: bytes, mtime_ns: int, sandbox_id: int
) -> WorkspaceFile | None:
    """Keep a file the code wrote or changed; None when it did not change."""
    if len(data) > capture_max_bytes():
        raise ActionError(
            "file_too_large",
            f"{path} is larger than the {settings.CODEACT_CAPTURE_MAX_MB} MB kept of a file "
            "the code writes.",
        )
    digest = hashlib.sha256(data).hexdigest()
    conversation = execution.conversation
    with transaction.atomic():
        file = conversation.files.select_for_update().filter(path=path).first()
        if file is not None and file.sha256 == digest:
            # Same bytes: only remember that this sandbox has them (no event, no seq).
            mark_in_sandbox(file, sandbox_id, mtime_ns)
            return None
        seq = conversation.next_seq()
        _check_room(conversation, len(data), replacing=file)
        if file is None:
            file = WorkspaceFile(
                conversation=conversation, path=path, origin=WorkspaceFile.Origin.GENERATED
            )
        file.size, file.sha256, file.content = len(data), digest, data
        file.execution, file.sandbox_id, file.mtime_ns, file.seq = (
            execution,
            sandbox_id,
            mtime_ns,
            seq,
        )
        file.save()
        publish_on_commit(conversation.id, file_event(file))
    return file


def mark_in_sandbox(file: WorkspaceFile, sandbox_id: int, mtime_ns: int) -> None:
    """Remember that this sandbox holds this version of the file, with this mtime."""
    WorkspaceFile.objects.filter(pk=file.pk).update(sandbox_id=sandbox_id, mtime_ns=mtime_ns)


def do_delete_file(conversation: Conversation, file_id: int) -> None:
    """Delete a file of the conversation; a sandbox holding it loses it before its
    next execution. Refused while an answer runs: its code may be using the file."""
    with transaction.atomic():
        seq = conversation.next_seq()  # locks the conversation: no turn starts meanwhile
        if conversation.turns.filter(status__in=Turn.ACTIVE).exists():
            raise ActionError(
                "busy", "Files cannot be deleted while an answer is running; stop it or wait."
            )
        file = conversation.files.filter(pk=file_id).first()
        if file is None:
            raise ActionError("not_found", "That file is already gone.")
        holder = file.sandbox_id
        if (
            holder is not None
            and SandboxRecord.objects.filter(
                pk=holder, state=SandboxRecord.State.CLAIMED, conversation=conversation
            ).exists()
        ):
            FileDeletion.objects.create(
                conversation=conversation, path=file.path, sandbox_id=holder
            )
        file.delete()
        publish_on_commit(conversation.id, file_deleted_event(file_id, seq))


def pending_deletions(conversation: Conversation, sandbox_id: int) -> list[str]:
    """Paths deleted by the user that this sandbox still holds; deletions meant for
    other (gone) sandboxes are dropped."""
    deletions = FileDeletion.objects.filter(conversation=conversation)
    paths = [d.path for d in deletions if d.sandbox_id == sandbox_id]
    deletions.exclude(sandbox_id=sandbox_id).delete()
    return paths


def deletion_done(conversation: Conversation, sandbox_id: int, path: str) -> None:
    deletions = FileDeletion.objects.filter(conversation=conversation, sandbox_id=sandbox_id)
    deletions.filter(path=path).delete()


def content_chunks(file_id: int, size: int = MiB) -> Iterator[bytes]:
    """A stored file's bytes, a piece at a time (never the whole file in memory)."""
    offset = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT substring(content FROM %s FOR %s) FROM chat_workspacefile WHERE id = %s",
                [offset + 1, size, file_id],
            )
            row = cursor.fetchone()
        piece = bytes(row[0]) if row and row[0] is not None else b""
        if not piece:
            return
        yield piece
        offset += len(piece)
        if len(piece) < size:
            return
