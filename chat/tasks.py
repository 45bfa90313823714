"""Celery tasks. They take ids, re-fetch, and are enqueued only after commit."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import task_prerun, worker_init, worker_ready
from django.db import close_old_connections

from chat import actions

log = logging.getLogger(__name__)


@task_prerun.connect
def _check_connections(**_: Any) -> None:
    """Connections outlive tasks (CELERY_DB_REUSE_MAX): drop any that are too old
    and have the next query check that the database is still there."""
    close_old_connections()


@worker_init.connect
def _load_the_runner(**_: Any) -> None:
    """The runner (and the model client's SDK) loads when a worker starts, not on its
    first turn; the web process, which only enqueues turns, never loads it."""
    import chat.runner  # noqa: F401


@shared_task(ignore_result=True, acks_late=True)
def run_turn(turn_id: int) -> None:
    """Run one queued turn to its end; a duplicate or late delivery does nothing."""
    from chat.runner import TurnRunner

    turn = actions.claim_turn(turn_id)
    if turn is not None:
        TurnRunner(turn).run()


@shared_task(ignore_result=True)
def sweep_turns() -> dict[str, int]:
    """Interrupt turns whose worker died and re-enqueue turns whose task was lost."""
    return actions.do_sweep_turns()


@shared_task(ignore_result=True)
def maintain_sandboxes() -> dict[str, int]:
    """Reap idle sandboxes, remove orphans and top up the warm pool (one run at a time)."""
    from chat import live, sandboxes

    lock = live.lock("maintain-sandboxes", ttl=300)
    if not lock.acquire(blocking=False):
        return {"skipped": 1}
    try:
        report = sandboxes.reconcile()
        report["reaped"] = sandboxes.reap_idle()
        report["started"] = sandboxes.top_up_pool()
        return report
    finally:
        lock.release()


@worker_ready.connect
def _reconcile_on_start(**_: Any) -> None:
    """Containers left by a worker that died are removed when a worker starts."""
    from chat import sandboxes

    try:
        log.info("sandbox reconcile at start: %s", sandboxes.reconcile())
    except Exception:
        log.warning("could not reconcile sandboxes at start", exc_info=True)
