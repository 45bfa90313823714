"""Where sandboxes run: the seam between the worker's pool and an engine.

The pool (chat/worker/pool.py) starts, attaches to, lists and removes sandboxes
only through a `Backend`; the executor uses only the `sandbox.api.Sandbox`
interface. Two backends implement it:

- `sandbox.docker_backend.DockerBackend`: containers on one Docker engine
  (several engines: one backend per host, chosen by chat/worker/hosts.py);
- `sandbox.kubernetes_backend.KubernetesBackend`: one Pod per sandbox in a
  sandbox namespace, reached through the API server's attach websocket.

Both speak the same bridge protocol over the sandbox's stdin/stdout
(sandbox/connection.py), so a sandbox behaves the same whatever runs it.
Nothing here imports Django.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from sandbox.api import Limits, Sandbox
from sandbox.profile import WebAccess

BACKENDS = ("docker", "kubernetes")


class StartedSandbox(Sandbox, Protocol):
    """A sandbox this process started: what the pool records about it."""

    @property
    def warm(self) -> threading.Event:
        """Set once the kernel has imported its preloads (or the sandbox is gone)."""
        ...

    @property
    def runtime(self) -> str | None:
        """The runtime it runs under ("runsc", "runc", a runtime class; None: the default)."""
        ...

    @property
    def address(self) -> str:
        """Its address on the egress network ("" without web access): the proxy's
        log names a sandbox by it."""
        ...


@dataclass(frozen=True)
class Placed:
    """One of a deployment's sandboxes as its engine lists it."""

    id: str
    running: bool  # False: exited, failed or being removed
    status: str  # the engine's word for it (running, exited, Pending, ...)
    age_seconds: float


class Backend(Protocol):
    """An engine sandboxes run on. Every call may raise SandboxError
    (permanent=False when the engine did not answer)."""

    # "docker" or "kubernetes", and where: an engine URL, or "namespace@server".
    kind: str
    host: str

    def start(
        self,
        image: str,
        limits: Limits,
        labels: dict[str, str],
        web: WebAccess | None = None,
    ) -> StartedSandbox:
        """Start a new sandbox carrying these labels; returns once its bridge is
        ready (its kernel may still be importing: wait on `warm`)."""
        ...

    def attach(self, sandbox_id: str, image: str, limits: Limits) -> Sandbox:
        """Attach to a running sandbox (another process may have started it);
        SandboxError when it is gone or does not answer."""
        ...

    def remove(self, sandbox_id: str) -> None:
        """Remove a sandbox, at once; one already gone is fine."""
        ...

    def list(self, labels: dict[str, str]) -> list[Placed]:
        """Every sandbox (running or not) carrying these labels."""
        ...

    def answers(self) -> bool:
        """True when the engine answers a cheap request now."""
        ...
