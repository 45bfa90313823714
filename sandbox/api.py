"""What the rest of the system knows about a sandbox: an interface and its data.

Outputs are nbformat-shaped dicts (`stream`, `display_data`,
`execute_result`, `error`). Nothing here imports Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Output = dict[str, Any]
OnOutput = Callable[[Output], None]
Poll = Callable[[], bool]
Status = Literal["ok", "error", "timeout", "interrupted", "died"]

MiB = 1 << 20
# The image formats a display item may carry, most preferred first. The host keeps
# one image per item, the first of these present; other image types are dropped.
# (The bridge in sandbox/image/ has its own copy: it runs in the container alone.)
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


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
        }


@dataclass
class ExecutionResult:
    status: Status
    execution_count: int | None
    duration: float
    outputs: list[Output] = field(default_factory=list)
    dropped_stream_bytes: int = 0
    dropped_displays: int = 0
    dropped_images: int = 0
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
        result is then `timeout`. `poll` is called about every 50 ms while
        the cell runs; when it returns True the cell is interrupted the same
        way and the result is `interrupted` (the user pressed Stop).
        """
        ...

    def interrupt(self) -> None:
        """Interrupt the running cell (SIGINT in the kernel)."""
        ...

    def restart(self) -> None:
        """Start a fresh kernel (and a fresh container if the old one died)."""
        ...

    def put_file(self, path: str, data: bytes) -> None:
        """Write a file under /workspace (a relative path)."""
        ...

    def get_file(self, path: str) -> bytes:
        """Read a regular file under /workspace; links, FIFOs and devices are refused."""
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
