"""What the rest of the system knows about a sandbox: an interface and its data.

Outputs are nbformat-shaped dicts (`stream`, `display_data`,
`execute_result`, `error`). Nothing here imports Django.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sandbox.image.outputs import IMAGE_MIMES as IMAGE_MIMES  # the formats an item may carry

Output = dict[str, Any]
OnOutput = Callable[[Output], None]
Poll = Callable[[], bool]
Status = Literal["ok", "error", "timeout", "interrupted", "died"]

MiB = 1 << 20
# Files travel in pieces of this size (base64 in one protocol line each).
TRANSFER_CHUNK = MiB


class Readable(Protocol):
    """A binary file-like object to read from (an open file, BytesIO, an upload)."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    """A binary file-like object to write to."""

    def write(self, data: bytes, /) -> object: ...


# What put_file accepts: the bytes, a readable binary file, or an iterator of pieces.
FileSource = bytes | Readable | Iterable[bytes]


class SandboxError(Exception):
    """A sandbox operation failed.

    `permanent` says whether trying again can help: a refused file name is
    permanent, a sandbox that could not start in time is not.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Limits:
    """Container profile and per-cell limits; every value is a setting."""

    memory_bytes: int = 1024 * MiB
    cpus: float = 1.0
    pids: int = 256
    nofile: int = 1024
    fsize_bytes: int = 512 * MiB
    tmp_bytes: int = 256 * MiB
    workspace_bytes: int = 512 * MiB
    # Files per tmpfs (/tmp, /workspace): inodes live in the sandbox's memory, so
    # a loop creating empty files would otherwise exhaust it without filling `size`.
    inodes: int = 50_000
    cell_timeout: float = 120.0
    interrupt_grace: float = 5.0
    stream_bytes: int = 1 * MiB
    display_items: int = 50
    image_bytes: int = 5 * MiB
    # The non-image values of one display item together (text, HTML, JSON, ...),
    # and the text of one error; over it, values are dropped and counted.
    display_item_bytes: int = 1 * MiB
    # Everything one cell displays (images included) and its errors' text.
    display_bytes: int = 10 * MiB
    file_bytes: int = 100 * MiB
    start_timeout: float = 60.0
    # Imported in every new kernel before it is used (see PRELOADS in the bridge);
    # each costs memory in every idle sandbox and saves its import in the first cell.
    preload: tuple[str, ...] = ("numpy", "pandas", "matplotlib")

    def cell_limits(self) -> dict[str, int]:
        return {
            "stream_bytes": self.stream_bytes,
            "display_items": self.display_items,
            "image_bytes": self.image_bytes,
            "display_item_bytes": self.display_item_bytes,
            "display_bytes": self.display_bytes,
            "line_bytes": self.line_bytes,
        }

    @property
    def line_bytes(self) -> int:
        """The longest protocol line the host accepts: one output within the caps
        (an image and its text, or a stream piece), or one file chunk, with room
        for the envelope. The bridge does not send a longer one."""
        item = self.image_bytes + self.display_item_bytes + 64 * 1024
        return max(item, self.stream_bytes, TRANSFER_CHUNK * 4 // 3) + 64 * 1024


@dataclass
class ExecutionResult:
    status: Status
    execution_count: int | None
    duration: float
    outputs: list[Output] = field(default_factory=list)
    dropped_stream_bytes: int = 0
    dropped_displays: int = 0
    dropped_images: int = 0
    # Bytes of display values other than images, and of error text, that were dropped.
    dropped_display_bytes: int = 0
    kernel_restarted: bool = False
    detail: str = ""

    @property
    def state_lost(self) -> bool:
        """True when variables from earlier cells are gone."""
        return self.kernel_restarted or self.status == "died"


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mtime_ns: int


class Sandbox(Protocol):
    """One conversation's stateful Python kernel in an isolated container.

    `DockerSandbox` implements it; the worker's executor depends only on this.
    """

    id: str

    @property
    def alive(self) -> bool:
        """False once the container (or the connection to it) is gone."""
        ...

    def execute(
        self,
        code: str,
        on_output: OnOutput | None = None,
        timeout: float | None = None,
        poll: Poll | None = None,
    ) -> ExecutionResult:
        """Run code in the kernel, streaming outputs to on_output as they come.

        Past `timeout` (default: the cell limit) the kernel is interrupted,
        and restarted if it does not yield within the grace period; the
        result is then `timeout`. A sandbox that answers neither within
        another grace period is removed, and the result is `died`. `poll`
        is called about every 50 ms while the cell runs; when it returns
        True the cell is interrupted the same way and the result is
        `interrupted` (the user pressed Stop).
        """
        ...

    def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT in the kernel)."""
        ...

    def restart(self) -> None:
        """Start a fresh kernel (and a fresh container if the old one died)."""
        ...

    def put_file(self, path: str, data: FileSource) -> int:
        """Write a file under /workspace (a relative path), piece by piece; returns its size.

        Over the file limit it is refused (SandboxError, permanent) and what
        was written of it is removed.
        """
        ...

    def get_file(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a regular file under /workspace; links, FIFOs and devices are refused.

        A file over max_bytes (default: the file limit) is refused, even when it
        grew after it was listed: at most max_bytes + 1 bytes are read.
        """
        ...

    def get_file_into(self, path: str, sink: Writable, max_bytes: int | None = None) -> int:
        """Like get_file, writing the file piece by piece into sink; returns its size.

        On a refusal part of the file may already be in sink: discard it.
        """
        ...

    def delete_file(self, path: str) -> bool:
        """Remove a file under /workspace; False when there was none. Directories are refused."""
        ...

    def list_files(self) -> list[FileInfo]:
        """The regular files under /workspace."""
        ...

    def detach(self) -> None:
        """Let go of the sandbox without stopping it (another worker may attach)."""
        ...

    def close(self) -> None:
        """Remove the container."""
        ...
