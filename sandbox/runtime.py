"""Which OCI runtime sandboxes run under: gVisor (runsc) wherever the engine has it.

Under runc a sandbox shares the host's kernel, and uid 1000 inside is uid 1000
outside; gVisor puts its own kernel in between, at the cost of a slower start
(hidden by the warm pool) and slower system calls. `auto` picks runsc when the
engine lists it and runc otherwise, with a warning logged once per engine.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CHOICES = ("auto", "runsc", "runc")
NO_GVISOR = (
    "gVisor (runsc) is not installed in this Docker engine: sandboxes run under runc "
    "and share the host's kernel. Install runsc and register it with dockerd "
    "(scripts/bootstrap does both), or set CODEACT_SANDBOX_RUNTIME=runc to accept this."
)


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime sandboxes get, and a warning for operators when it is weaker."""

    name: str
    warning: str = ""


_lock = threading.Lock()
_chosen: dict[tuple[str, str], RuntimeChoice] = {}


def choose_runtime(client: Any, requested: str | None = "auto") -> RuntimeChoice:
    """The effective runtime for `requested` (auto, runsc, runc; empty or None = auto).

    Asks the engine once per engine and setting; `auto` without runsc logs
    NO_GVISOR once. An explicit runtime is used as it is (the engine refuses
    to start a sandbox under one it does not have).
    """
    wanted = (requested or "auto").strip().lower()
    if wanted not in CHOICES:
        raise ValueError(f"unknown sandbox runtime {requested!r}; choose one of {CHOICES}")
    if wanted != "auto":
        return RuntimeChoice(wanted)
    key = (str(getattr(client.api, "base_url", "")), wanted)
    with _lock:
        if key not in _chosen:
            runtimes = client.info().get("Runtimes") or {}
            if "runsc" in runtimes:
                _chosen[key] = RuntimeChoice("runsc")
            else:
                log.warning(NO_GVISOR)
                _chosen[key] = RuntimeChoice("runc", NO_GVISOR)
        return _chosen[key]
