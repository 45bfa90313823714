"""The engines sandboxes run on: which backend reaches each, which answer, where a
new sandbox goes.

A host is named by its address, stored on every SandboxRecord: a Docker engine's
URL ("" for the default engine: CODEACT_DOCKER_URL, DOCKER_HOST or the local
socket), or "kubernetes:<namespace>" for the Kubernetes backend. Any worker
reaches any host through the engine's API, so the record alone says where a
conversation's kernel lives.

A host that stops answering is marked down (a SandboxHost row): new sandboxes
go elsewhere, and a conversation whose sandbox was there gets a new one on its
next cell, with its files restored and the usual notice that variables are
gone. Beat checks every host (`check`) and marks a down host up again once it
answers; its leftover containers are then removed as orphans by reconcile.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from chat.models import SandboxHost, SandboxRecord
from sandbox.api import SandboxError
from sandbox.backend import Backend

log = logging.getLogger(__name__)

KUBERNETES = "kubernetes:"

_local = threading.local()


def addresses() -> list[str]:
    """Every configured host, the first being the one web-access sandboxes use."""
    if settings.CODEACT_SANDBOX_BACKEND == "kubernetes":
        return [f"{KUBERNETES}{settings.CODEACT_K8S_NAMESPACE}"]
    # One engine: "", whatever CODEACT_DOCKER_URL says, so that records made before
    # there were several hosts (host "") stay this engine's.
    return list(settings.CODEACT_DOCKER_HOSTS) or [""]


def label(address: str) -> str:
    """How operators see a host's address."""
    return address or "default engine"


def _settings_key() -> tuple[Any, ...]:
    # Tests change settings between calls: a cached client must follow them.
    return (
        settings.CODEACT_SANDBOX_BACKEND,
        settings.CODEACT_SANDBOX_RUNTIME,
        settings.CODEACT_DOCKER_TLS_DIR,
        settings.CODEACT_DOCKER_HOST_TIMEOUT,
        settings.CODEACT_K8S_NAMESPACE,
        settings.CODEACT_K8S_RUNTIME_CLASS,
        settings.CODEACT_K8S_EGRESS_PROXY,
        settings.CODEACT_KUBECONFIG,
    )


def backend(address: str) -> Backend:
    """This thread's backend for a host (SandboxError when its engine cannot be
    reached to make one). One per thread: docker-py keeps one connection pool per
    URL and drops the oldest of 25 while another thread may still be using it,
    which breaks concurrent claims (seen with 50 conversations starting)."""
    cache: dict[tuple[Any, ...], Backend] = _local.__dict__.setdefault("backends", {})
    key = (address, *_settings_key())
    if key not in cache:
        cache[key] = _make(address)
    return cache[key]


def _make(address: str) -> Backend:
    if address.startswith(KUBERNETES):
        from sandbox.kubernetes_backend import KubernetesBackend, load_api_client

        pods: Backend = KubernetesBackend(
            load_api_client(settings.CODEACT_KUBECONFIG),
            address.removeprefix(KUBERNETES),
            runtime_class=settings.CODEACT_K8S_RUNTIME_CLASS,
            egress_proxy=settings.CODEACT_K8S_EGRESS_PROXY,
        )
        return pods
    from sandbox.docker_backend import ENGINE_ERRORS, DockerBackend

    try:
        # docker-py asks the engine for its API version as the client is made.
        client = docker_engine_client(address)
    except ENGINE_ERRORS as exc:
        raise SandboxError(
            f"The Docker engine {label(address)} does not answer: {exc}", permanent=False
        ) from exc
    return DockerBackend(
        client,
        runtime=settings.CODEACT_SANDBOX_RUNTIME or None,
        host=address,
        answer_timeout=settings.CODEACT_DOCKER_HOST_TIMEOUT,
    )


def docker_engine_client(address: str, timeout: float = 60) -> Any:
    """A docker-py client of the engine at address ("" the default one), with the
    TLS client certificate of CODEACT_DOCKER_TLS_DIR for a tcp:// engine."""
    from sandbox.docker_backend import docker_client

    address = address or settings.CODEACT_DOCKER_URL
    tls = _tls_config(address)
    if tls is None:
        return docker_client(address or None, timeout=timeout)
    import docker

    return docker.DockerClient(base_url=address, version="auto", timeout=timeout, tls=tls)


def _tls_config(address: str) -> Any:
    root = settings.CODEACT_DOCKER_TLS_DIR
    parts = urlsplit(address)
    if not root or parts.scheme not in ("tcp", "https"):
        return None
    import docker.tls

    own = os.path.join(root, parts.hostname or "")
    folder = own if os.path.isfile(os.path.join(own, "cert.pem")) else root
    files = {name: os.path.join(folder, f"{name}.pem") for name in ("ca", "cert", "key")}
    if missing := [path for path in files.values() if not os.path.isfile(path)]:
        raise SandboxError(
            f"The TLS files of {address} are missing: {', '.join(missing)}.", permanent=True
        )
    return docker.tls.TLSConfig(
        client_cert=(files["cert"], files["key"]), ca_cert=files["ca"], verify=True
    )


# --- which hosts answer ---------------------------------------------------------


def down() -> set[str]:
    """The configured hosts currently marked down."""
    return set(
        SandboxHost.objects.filter(address__in=addresses(), down_since__isnull=False).values_list(
            "address", flat=True
        )
    )


def mark_down(address: str, error: str) -> None:
    """The host did not answer: no new sandbox goes there until it does again."""
    now = timezone.now()
    host, _ = SandboxHost.objects.get_or_create(address=address)
    if host.down_since is None:
        log.warning("sandbox host %s is down: %s", label(address), error)
        host.down_since = now
    host.last_error, host.checked_at = error[:500], now
    host.save()


def mark_up(address: str) -> None:
    updated = SandboxHost.objects.filter(address=address, down_since__isnull=False).update(
        down_since=None, last_error="", checked_at=timezone.now()
    )
    if updated:
        log.warning("sandbox host %s answers again", label(address))


def answers(address: str) -> bool:
    """Whether the host answers now (within CODEACT_DOCKER_HOST_TIMEOUT); marks it."""
    try:
        alive = backend(address).answers()
    except SandboxError as exc:
        mark_down(address, exc.message)
        return False
    if alive:
        mark_up(address)
    else:
        mark_down(address, "it does not answer")
    return alive


def recheck(after: float = 5.0) -> None:
    """Ask again the hosts marked down that were last asked more than `after` seconds
    ago: one that answers is up again now, not at beat's next check (a restarted
    engine, the only one, would otherwise refuse every claim meanwhile)."""
    stale = timezone.now() - timedelta(seconds=after)
    for address in SandboxHost.objects.filter(
        address__in=addresses(), down_since__isnull=False, checked_at__lt=stale
    ).values_list("address", flat=True):
        answers(address)


def check() -> dict[str, bool]:
    """Ask every configured host whether it answers (beat); marks each up or down."""
    return {address: answers(address) for address in addresses()}


# --- placement ----------------------------------------------------------------


def room() -> dict[str, int]:
    """Free places per host that is up: the host cap minus its live sandboxes."""
    live = dict(
        SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE)
        .values_list("host")
        .annotate(n=Count("id"))
        .values_list("host", "n")
    )
    gone = down()
    cap = settings.CODEACT_SANDBOXES_PER_HOST
    return {a: cap - live.get(a, 0) for a in addresses() if a not in gone}


def place(web: bool = False) -> str | None:
    """The host a new sandbox goes to: the one with the most room (None: no room
    anywhere). Web-access sandboxes go to the first host, beside the egress proxy."""
    free = room()
    if web and settings.CODEACT_SANDBOX_BACKEND == "docker":
        first = addresses()[0]
        return first if free.get(first, 0) > 0 else None
    best = max(free.items(), key=lambda item: item[1], default=None)
    return best[0] if best is not None and best[1] > 0 else None
