"""Sandbox lifecycle: the warm pool, claims, idle reaping and orphan removal.

A claim hands the executor a `sandbox.api.Sandbox`; this module reaches the
engines only through `sandbox.backend.Backend` (Docker containers on one or
more engines, or Kubernetes pods), one per host (chat/worker/hosts.py), and
each record stores the host its sandbox runs on.

The database is the registry. A warm container is claimed with a row lock
(SKIP LOCKED), so two workers never get the same one; a container that the
registry does not list as live, but that carries this deployment's label, is
an orphan and is removed, once it is older than the time a sandbox may take to
start: a container is created before its row is written (a warm one only
after its libraries are imported), and a reconcile running meanwhile in
another thread or worker must not take it for an orphan.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.models import Conversation, SandboxRecord
from chat.worker import egress, hosts
from chat.worker.start_slots import start_slot
from sandbox.api import Limits, Sandbox, SandboxError
from sandbox.backend import Backend, StartedSandbox
from sandbox.docker_backend import managed_containers as managed_containers
from sandbox.image_tag import image_tag
from sandbox.profile import WebAccess

log = logging.getLogger(__name__)


def _client() -> Any:
    """This thread's docker-py client of the first Docker host (the one web-access
    sandboxes and the egress network use)."""
    return getattr(hosts.backend(hosts.addresses()[0]), "client", None)


def docker_engine() -> Any:
    """This thread's client of the Docker engine web-access sandboxes run on."""
    return _client()


def image() -> str:
    return settings.CODEACT_SANDBOX_IMAGE or image_tag()


def limits() -> Limits:
    config: dict[str, Any] = settings.CODEACT_SANDBOX_LIMITS
    return Limits(**config)


def deployment_labels() -> dict[str, str]:
    # Only this deployment's containers are ever reconciled: a test run, a
    # second deployment or `make run` on the same engine are left alone.
    return {"codeact.deployment": settings.CHANNEL_PREFIX}


def _web_access(engine: Backend) -> WebAccess:
    if engine.kind == "kubernetes":
        # The pod gets the proxy variables and the label the chart's NetworkPolicy
        # lets through to the proxy (sandbox/kubernetes_backend.py).
        return WebAccess("", {})
    try:
        net = egress.network(getattr(engine, "client", None))
    except egress.EgressUnavailable as exc:
        raise SandboxError(f"Web access is not available: {exc}", permanent=False) from exc
    return WebAccess(net.name, egress.sandbox_environment(net))


def _new_container(
    host: str, labels: dict[str, str] | None = None, web: bool = False
) -> StartedSandbox:
    """Start a sandbox on a host, once one of the start slots is free; with web
    access, on the egress network, its address's proxy records reset."""
    engine = hosts.backend(host)
    access = _web_access(engine) if web else None
    with start_slot(wait=limits().start_timeout):
        container = engine.start(
            image(), limits(), {**deployment_labels(), **(labels or {})}, web=access
        )
    if container.address:
        try:
            egress.reset(container.address)
        except egress.EgressUnavailable as exc:
            container.close()
            raise SandboxError(f"Could not prepare web access: {exc}", permanent=False) from exc
    return container


@dataclass
class Claim:
    sandbox: Sandbox
    record: SandboxRecord
    fresh: bool  # a new kernel: variables from earlier turns are gone
    # Why the conversation's previous sandbox was replaced although it ran: "web_access"
    # when its web access was switched since; "" otherwise.
    replaced: str = ""


def top_up_pool() -> int:
    """Start warm sandboxes until the pool holds CODEACT_POOL_SIZE (within the host
    caps, on the hosts with the most room); returns how many."""
    hosts.recheck()
    with transaction.atomic():
        _lock_reservations()
        warm = SandboxRecord.objects.filter(
            state=SandboxRecord.State.WARM, host__in=_up_hosts()
        ).count()
        reserved = []
        for _ in range(max(0, settings.CODEACT_POOL_SIZE - warm)):
            host = hosts.place()
            if host is None:
                break
            reserved.append(_reserve(host, state=SandboxRecord.State.WARM))
    started = 0
    for index, record in enumerate(reserved):
        try:
            _start_warm(record)
            started += 1
        except SandboxError:
            log.warning("could not start a warm sandbox", exc_info=True)
            for unused in reserved[index:]:
                retire(unused, "start_failed")
            break
    return started


def create_warm() -> SandboxRecord:
    """Start one warm sandbox (within the host cap) and return its record."""
    with transaction.atomic():
        _lock_reservations()
        record = _reserve(_check_host_room(), state=SandboxRecord.State.WARM)
    _start_warm(record)
    return record


def _start_warm(record: SandboxRecord) -> None:
    """Start the reserved pool sandbox, and offer it once its libraries are imported."""
    try:
        container = _new_container(record.host, {"codeact.pool": "1"})
    except BaseException:
        retire(record, "start_failed")
        raise
    try:
        _wait_warm(container)
        _fill(record, container)
    except BaseException:
        container.close()
        retire(record, "start_failed")
        raise
    container.detach()


def _attach(record: SandboxRecord) -> Sandbox:
    """The running sandbox of a record (raises SandboxError if it does not answer)."""
    return hosts.backend(record.host).attach(record.container_id, record.image, limits())


def _up_hosts() -> list[str]:
    gone = hosts.down()
    return [a for a in hosts.addresses() if a not in gone]


# Claims and pool starts count and reserve their sandbox under one lock: a count
# and the claim it allows are one step, so racing claims cannot pass a cap
# together. The lock is held for milliseconds: containers start after it, into
# the reserved row (its container id is a placeholder until then).
_RESERVATIONS_LOCK = 0x636F_6465_6163_74  # "codeact"
PENDING = SandboxRecord.PENDING


def _lock_reservations() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_RESERVATIONS_LOCK])


def _reserve(host: str, **fields: Any) -> SandboxRecord:
    """A row for a sandbox about to start on host (inside the reservation lock)."""
    return SandboxRecord.objects.create(
        container_id=f"{PENDING}{uuid.uuid4().hex}",
        image=image(),
        runtime=settings.CODEACT_SANDBOX_RUNTIME or "",
        host=host,
        **fields,
    )


def _take_warm(conversation: Conversation) -> SandboxRecord | None:
    record = (
        SandboxRecord.objects.select_for_update(skip_locked=True)
        .filter(state=SandboxRecord.State.WARM, image=image(), host__in=_up_hosts())
        .exclude(container_id__startswith=PENDING)
        .order_by("created_at")
        .first()
    )
    if record is None:
        return None
    now = timezone.now()
    record.state = SandboxRecord.State.CLAIMED
    record.conversation = conversation
    record.owner_id = conversation.owner_id
    record.claimed_at = record.last_used_at = now
    record.save(update_fields=["state", "conversation", "owner", "claimed_at", "last_used_at"])
    return record


# Set while a turn the operator started from a terminal runs (chat.worker.headless):
# the per-user cap shares sandboxes among the web's users, and an evaluation runs
# several tasks of one account at once. The per-host cap still holds.
operator_run: ContextVar[bool] = ContextVar("operator_run", default=False)


def _check_user_cap(conversation: Conversation) -> None:
    if operator_run.get():
        return
    live = SandboxRecord.objects.filter(
        state=SandboxRecord.State.CLAIMED, owner_id=conversation.owner_id
    ).exclude(conversation=conversation)
    cap = settings.CODEACT_SANDBOXES_PER_USER
    if live.count() >= cap:
        raise SandboxError(
            f"You already have {cap} conversation{'s' if cap != 1 else ''} with a running "
            "Python sandbox, the most allowed. Finish or delete one of them, or wait until an "
            f"idle one is shut down (after {settings.CODEACT_SANDBOX_IDLE_SECONDS // 60} "
            "minutes without use).",
            permanent=True,
        )


def _check_host_room(web: bool = False) -> str:
    """The host a new sandbox goes to; SandboxError when every host is full or down."""
    host = hosts.place(web)
    if host is not None:
        return host
    if not _up_hosts():
        raise SandboxError(
            "No machine that runs Python sandboxes answers right now. Press Retry in a "
            "minute; if it goes on, tell the operator.",
            permanent=False,
        )
    raise SandboxError(
        f"The server is running {settings.CODEACT_SANDBOXES_PER_HOST} Python sandboxes, "
        "the most this server runs at once. One frees up when another conversation's "
        "sandbox goes idle: press Retry in a few minutes.",
        permanent=False,
    )


def _claim_slot(conversation: Conversation, web: bool) -> tuple[SandboxRecord, bool]:
    """The conversation's new sandbox row, within the caps: a warm one (True) or a
    reservation for a container to start now (False). The warm pool has no network:
    a sandbox with web access is always started for its conversation."""
    with transaction.atomic():
        _lock_reservations()
        _check_user_cap(conversation)
        warm = None if web else _take_warm(conversation)
        if warm is not None:
            return warm, True
        host = _check_host_room(web)
        now = timezone.now()
        return _reserve(
            host,
            state=SandboxRecord.State.CLAIMED,
            conversation=conversation,
            owner_id=conversation.owner_id,
            claimed_at=now,
            last_used_at=now,
        ), False


def claim_for(conversation: Conversation) -> Claim:
    """The conversation's sandbox: its own if alive, else one from the pool, else a new one."""
    web = conversation.has_web_access
    replaced = ""
    current = SandboxRecord.objects.filter(
        conversation=conversation, state=SandboxRecord.State.CLAIMED
    ).first()
    if current is not None and bool(current.egress_address) != web:
        # Web access was switched: a sandbox's network is fixed when it starts.
        remove(current, "web_access_changed")
        current, replaced = None, "web_access"
    if current is not None:
        try:
            sandbox = _attach(current)
            touch(current)
            return Claim(sandbox, current, fresh=False)
        except SandboxError:
            log.info("sandbox %s of %s is gone", current.container_id[:12], conversation.id)
            _lost(current, "lost")
    hosts.recheck()
    while True:
        record, warm = _claim_slot(conversation, web)
        if not warm:
            try:
                sandbox = _start_claimed(record, conversation, web)
            except SandboxError as exc:
                if exc.permanent or hosts.answers(record.host):
                    raise
                continue  # its host went down: the next slot is on another one
            return Claim(sandbox, record, True, replaced)
        try:
            return Claim(_attach(record), record, fresh=True, replaced=replaced)
        except SandboxError:
            _lost(record, "dead_in_pool")


def _lost(record: SandboxRecord, reason: str) -> None:
    """A sandbox that does not answer: removed, or, when its whole host does not
    answer, retired (the host is marked down; reconcile removes the container once
    the host is back)."""
    if hosts.answers(record.host):
        remove(record, reason)
    else:
        retire(record, "host_down")


def _start_claimed(record: SandboxRecord, conversation: Conversation, web: bool) -> Sandbox:
    try:
        container = _new_container(record.host, {"codeact.conversation": str(conversation.id)}, web)
    except BaseException:
        retire(record, "start_failed")
        raise
    _fill(record, container)
    try:
        _wait_warm(container)
    except BaseException:
        remove(record, "start_failed")
        raise
    return container


def _wait_warm(container: StartedSandbox) -> None:
    """Wait for the new kernel's preloads: a cell sent before waits behind them in
    the bridge, and that wait would count against the cell's own time limit (with
    many kernels starting at once it took longer than the whole limit)."""
    if not container.warm.wait(limits().start_timeout) or not container.alive:
        raise SandboxError("The sandbox did not warm up in time.", permanent=False)


def _fill(record: SandboxRecord, container: StartedSandbox) -> None:
    record.container_id = container.id
    record.runtime = container.runtime or ""
    record.egress_address = container.address
    record.save(update_fields=["container_id", "runtime", "egress_address"])


def touch(record: SandboxRecord) -> None:
    """The sandbox was used now (idle reaping counts from here)."""
    SandboxRecord.objects.filter(pk=record.pk).update(last_used_at=timezone.now())


def remove(record: SandboxRecord, reason: str) -> None:
    """Remove the sandbox and retire its record (on a host that is down, only
    retire it: reconcile removes the container when the host is back)."""
    if not record.container_id.startswith(PENDING) and record.host not in hosts.down():
        try:
            hosts.backend(record.host).remove(record.container_id)
        except SandboxError as exc:
            log.warning("could not remove %s: %s", record.container_id[:12], exc.message)
    retire(record, reason)


def retire(record: SandboxRecord, reason: str) -> None:
    """The record no longer counts: its container is gone (or never started)."""
    SandboxRecord.objects.filter(pk=record.pk).update(
        state=SandboxRecord.State.REMOVED, removed_at=timezone.now(), removed_reason=reason
    )


def reap_idle() -> int:
    """Remove conversation sandboxes unused for CODEACT_SANDBOX_IDLE_SECONDS."""
    cutoff = timezone.now() - timedelta(seconds=settings.CODEACT_SANDBOX_IDLE_SECONDS)
    idle = list(
        SandboxRecord.objects.filter(state=SandboxRecord.State.CLAIMED, last_used_at__lt=cutoff)
    )
    for record in idle:
        remove(record, "idle")
    return len(idle)


def reconcile(grace: float | None = None) -> dict[str, int]:
    """On every host that answers, remove labelled sandboxes the registry does not
    know (once older than `grace` seconds: by default the sandbox start timeout
    plus a margin), and retire records whose sandbox is gone (stopped counts as
    gone). Records on a host that is down are left for when it is back."""
    if grace is None:
        grace = limits().start_timeout + 30.0
    # A host taken out of the configuration: its records no longer count (their
    # sandboxes are the operator's to stop there; conversations get new ones).
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE).exclude(
        host__in=hosts.addresses()
    ):
        retire(record, "host_removed")
    orphans = gone = 0
    for host in hosts.addresses():
        try:
            found = hosts.backend(host).list(deployment_labels())
        except SandboxError as exc:
            hosts.mark_down(host, exc.message)
            continue
        hosts.mark_up(host)
        report = _reconcile_host(host, found, grace)
        orphans += report[0]
        gone += report[1]
    return {"orphans": orphans, "gone": gone}


def _reconcile_host(host: str, found: list[Any], grace: float) -> tuple[int, int]:
    live = {
        r.container_id: r
        for r in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE, host=host)
    }
    seen: set[str] = set()
    orphans = 0
    engine = hosts.backend(host)
    for item in found:
        if item.id in live and item.running:
            seen.add(item.id)
            continue
        if item.id in live:
            continue  # stopped: retired below
        if item.age_seconds < grace:
            continue  # being created: its row is not written yet
        orphans += 1
        try:
            engine.remove(item.id)
        except SandboxError as exc:
            log.warning("could not remove orphan %s: %s", item.id[:12], exc.message)
    starting_since = timezone.now() - timedelta(seconds=grace)
    gone = [
        r
        for cid, r in live.items()
        if cid not in seen and not (cid.startswith(PENDING) and r.created_at > starting_since)
    ]
    for record in gone:
        remove(record, "gone")
    return orphans, len(gone)


@dataclass
class Listed:
    """One of this deployment's sandbox containers, as an operator sees it."""

    container_id: str
    status: str  # the engine's: running, exited, ...
    record: SandboxRecord | None  # None: an orphan the registry does not know
    age_seconds: float
    host: str = ""


def list_sandboxes() -> list[Listed]:
    """This deployment's sandboxes on every host that answers, with their records,
    oldest first."""
    records = {
        r.container_id: r
        for r in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE).select_related(
            "conversation", "owner"
        )
    }
    found = []
    for host in _up_hosts():
        try:
            placed = hosts.backend(host).list(deployment_labels())
        except SandboxError as exc:
            log.warning("could not list the sandboxes of %s: %s", hosts.label(host), exc.message)
            continue
        found += [Listed(p.id, p.status, records.get(p.id), p.age_seconds, host) for p in placed]
    return sorted(found, key=lambda item: -item.age_seconds)


def stop_sandboxes(container_ids: list[str] | None = None, reason: str = "operator") -> int:
    """Remove these sandbox containers of this deployment (prefixes of their ids
    work), or all of them; their files are kept in PostgreSQL and come back in a
    new sandbox on the conversation's next execution. Returns how many."""
    stopped = 0
    for item in list_sandboxes():
        if container_ids is not None and not any(
            item.container_id.startswith(wanted) for wanted in container_ids
        ):
            continue
        if item.record is not None:
            remove(item.record, reason)
        else:
            with contextlib.suppress(SandboxError):
                hosts.backend(item.host).remove(item.container_id)
        stopped += 1
    if container_ids is None:  # reservations whose container never started
        for record in SandboxRecord.objects.filter(
            state__in=SandboxRecord.LIVE, container_id__startswith=PENDING
        ):
            retire(record, reason)
    return stopped
