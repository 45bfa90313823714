"""Celery tasks. They take ids, re-fetch, and are enqueued only after commit.

The worker package is imported inside the tasks (and preloaded when a worker
starts): the web process, which only sends tasks by name, never loads it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import task_prerun, worker_init, worker_ready
from django.db import close_old_connections

from chat import live
from chat.actions import conversations, turns
from chat.actions.conversations import RELEASE_SANDBOXES
from chat.actions.messages import RUN_TURN, send_turn

log = logging.getLogger(__name__)


@task_prerun.connect
def _check_connections(**_: Any) -> None:
    """Connections outlive tasks (CELERY_DB_REUSE_MAX): drop any that are too old
    and have the next query check that the database is still there."""
    close_old_connections()


@worker_init.connect
def _load_the_runner(**_: Any) -> None:
    """The runner (and the model client's SDK) loads when a worker starts, not on its
    first turn."""
    import chat.worker.runner  # noqa: F401


@shared_task(name=RUN_TURN, ignore_result=True, acks_late=True)
def run_turn(turn_id: int) -> None:
    """Run one queued turn to its end; a duplicate or late delivery does nothing."""
    from chat.worker.runner import TurnRunner

    claim = turns.claim_turn(turn_id)
    if claim is not None:
        TurnRunner(claim).run()


@shared_task(ignore_result=True)
def sweep_turns() -> dict[str, int]:
    """Interrupt turns whose worker died and re-enqueue turns whose task was lost."""
    sweep = turns.do_sweep_turns()
    for turn_id in sweep.requeue:
        send_turn(turn_id)
    return {"interrupted": sweep.interrupted, "requeued": len(sweep.requeue)}


@shared_task(ignore_result=True)
def maintain_sandboxes() -> dict[str, int]:
    """Reap idle sandboxes, remove orphans and top up the warm pool (one run at a time)."""
    from chat.worker import pool

    lock = live.lock("maintain-sandboxes", ttl=300)
    if not lock.acquire(blocking=False):
        return {"skipped": 1}
    try:
        report = pool.reconcile()
        report["reaped"] = pool.reap_idle()
        report["started"] = pool.top_up_pool()
        return report
    finally:
        lock.release()


@worker_ready.connect
def _report_health(**_: Any) -> None:
    """The web's readiness learns from Redis whether this worker's Docker engine and
    model endpoints answer (it can reach neither). Started before the reconcile
    below, which may wait on a slow engine."""
    from chat.worker import probes

    probes.start_reporting()


@worker_ready.connect
def _reconcile_on_start(**_: Any) -> None:
    """Containers left by a worker that died are removed when a worker starts."""
    from chat.worker import pool

    try:
        log.info("sandbox reconcile at start: %s", pool.reconcile())
    except Exception:
        log.warning("could not reconcile sandboxes at start", exc_info=True)


@shared_task(name=RELEASE_SANDBOXES, ignore_result=True)
def release_sandboxes(record_ids: list[int]) -> int:
    """Remove the containers of a deleted conversation's sandboxes at once, so they
    stop counting against the caps (the records outlive the conversation)."""
    from chat.models import SandboxRecord
    from chat.worker import pool

    records = list(
        SandboxRecord.objects.filter(pk__in=record_ids, state=SandboxRecord.State.CLAIMED)
    )
    for record in records:
        pool.remove(record, "deleted")
    return len(records)


@shared_task(ignore_result=True)
def purge_deleted_conversations() -> int:
    """Remove conversations kept for review past CODEACT_RETENTION_DAYS."""
    return conversations.do_purge_deleted_conversations()
