"""Plain-text helpers shared by the protocol, the page, review and exports.

Django-free and protocol-free: kernel output carries terminal colour codes
(IPython colours its tracebacks), and sizes are shown to people and to the
model the same way.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Text without terminal escape sequences (colours, cursor moves)."""
    return _ANSI.sub("", text)


def human_size(size: int) -> str:
    """A byte count as people read it: `512 bytes`, `1.5 KB`, `2.0 MB`."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"
