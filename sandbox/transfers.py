"""File transfers with a sandbox's bridge: in and out of /workspace, piece by piece.

A mixin of DockerSandbox: it needs only `_control` (one request, its chunks
and its done) and the limits. Files travel base64 in chunks of one
TRANSFER_CHUNK, so neither side holds a whole file; what the bridge sends is
bounded here (chunk size and count, total bytes) whatever it claims.
"""

from __future__ import annotations

import abc
import base64
import binascii
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

from sandbox.api import TRANSFER_CHUNK, FileInfo, FileSource, Limits, SandboxError, Writable

log = logging.getLogger(__name__)

MAX_LISTED = 2000
MAX_PATH_BYTES = 4096
MAX_COUNT = 1 << 53  # a count the bridge reports beyond this is nonsense


class FileTransfers(abc.ABC):
    id: str
    limits: Limits

    @abc.abstractmethod
    def _control(
        self,
        op: str,
        timeout: float = 30.0,
        on_chunk: Callable[[Any], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send one request to the bridge; its chunks go to on_chunk; its done is returned."""

    def put_file(self, path: str, data: FileSource) -> int:
        """Write a file under /workspace, piece by piece; see sandbox.api.Sandbox.put_file."""
        limit = self.limits.file_bytes
        if isinstance(data, bytes | bytearray | memoryview) and len(data) > limit:
            raise SandboxError(f"The file is larger than {limit} bytes.", permanent=True)
        written = 0
        for piece in _pieces(data):
            if written + len(piece) > limit:
                self._discard(path)
                raise SandboxError(f"The file is larger than {limit} bytes.", permanent=True)
            encoded = base64.b64encode(piece).decode()
            _raise_for(self._control("put_file", path=path, data=encoded, append=written > 0))
            written += len(piece)
        return written

    def _discard(self, path: str) -> None:
        try:
            self.delete_file(path)
        except SandboxError:
            log.warning("sandbox %s: could not remove a refused file", self.id[:12])

    def get_file(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a regular file under /workspace; see sandbox.api.Sandbox.get_file."""
        sink = io.BytesIO()
        self.get_file_into(path, sink, max_bytes)
        return sink.getvalue()

    def get_file_into(self, path: str, sink: Writable, max_bytes: int | None = None) -> int:
        """Stream a file into sink; see sandbox.api.Sandbox.get_file_into."""
        limit = (
            self.limits.file_bytes if max_bytes is None else min(max_bytes, self.limits.file_bytes)
        )
        most_chunks = limit // TRANSFER_CHUNK + 2  # full chunks, the rest, one byte past
        state = {"bytes": 0, "chunks": 0}

        def on_chunk(data: Any) -> None:
            state["chunks"] += 1
            if not isinstance(data, str) or len(data) > TRANSFER_CHUNK * 4 // 3 + 4:
                raise SandboxError("The sandbox sent a damaged file.", permanent=False)
            if state["chunks"] > most_chunks:
                raise SandboxError("The sandbox sent too many pieces.", permanent=False)
            try:
                piece = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise SandboxError("The sandbox sent a damaged file.", permanent=False) from None
            state["bytes"] += len(piece)
            if state["bytes"] > limit:
                raise SandboxError(f"The file is larger than {limit} bytes.", permanent=True)
            sink.write(piece)

        reply = self._control("get_file", path=path, max_bytes=limit, on_chunk=on_chunk)
        _raise_for(reply)
        size = reply.get("size")
        if type(size) is int and size != state["bytes"]:
            # pieces were lost with a lost stream (a re-attached Kubernetes sandbox)
            raise SandboxError(
                f"The file arrived incomplete ({state['bytes']} of {size} bytes); try again.",
                permanent=False,
            )
        return state["bytes"]

    def delete_file(self, path: str) -> bool:
        """Remove a file under /workspace; see sandbox.api.Sandbox.delete_file."""
        reply = self._control("delete_file", path=path)
        _raise_for(reply)
        return reply.get("deleted") is True

    def list_files(self) -> list[FileInfo]:
        """The regular files under /workspace (names the bridge sends are checked)."""
        reply = self._control("list_files")
        _raise_for(reply)
        files: list[FileInfo] = []
        raw = reply.get("files")
        for item in (raw if isinstance(raw, list) else [])[:MAX_LISTED]:
            if not isinstance(item, dict):
                continue
            path, size, mtime = item.get("path"), item.get("size"), item.get("mtime_ns")
            if _plausible_path(path) and _count(size) == size and isinstance(mtime, int):
                assert isinstance(path, str) and isinstance(size, int)
                files.append(FileInfo(path=path, size=size, mtime_ns=mtime))
        return files


def _pieces(data: FileSource) -> Iterator[bytes]:
    """The source in pieces of at most one transfer chunk (one empty piece if empty)."""
    chunks: Iterator[bytes]
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        chunks = (bytes(view[i : i + TRANSFER_CHUNK]) for i in range(0, len(view), TRANSFER_CHUNK))
    elif hasattr(data, "read"):
        reader = data.read
        chunks = iter(lambda: bytes(reader(TRANSFER_CHUNK)), b"")
    else:
        chunks = (
            bytes(p[i : i + TRANSFER_CHUNK]) for p in data for i in range(0, len(p), TRANSFER_CHUNK)
        )
    sent = False
    for chunk in chunks:
        if chunk:
            sent = True
            yield chunk
    if not sent:
        yield b""


def _plausible_path(path: Any) -> bool:
    """A name the host may store: relative, inside the workspace, of a sane length."""
    if not isinstance(path, str) or not path or path.startswith("/"):
        return False
    if "\x00" in path or len(path.encode(errors="replace")) > MAX_PATH_BYTES:
        return False
    return ".." not in path.split("/")


def _count(value: Any) -> int:
    return value if type(value) is int and 0 <= value <= MAX_COUNT else 0


def _raise_for(reply: dict[str, Any]) -> None:
    status = reply.get("status")
    if status == "ok":
        return
    message = str(reply.get("error") or "the sandbox refused the request")[:300]
    raise SandboxError(message, permanent=status == "refused")
