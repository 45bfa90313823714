"""Celery tasks. They take ids, re-fetch, and are enqueued only after commit."""

from __future__ import annotations

from celery import shared_task

from chat import actions
from chat.runner import TurnRunner


@shared_task(ignore_result=True, acks_late=True)
def run_turn(turn_id: int) -> None:
    """Run one queued turn to its end; a duplicate or late delivery does nothing."""
    turn = actions.claim_turn(turn_id)
    if turn is not None:
        TurnRunner(turn).run()


@shared_task(ignore_result=True)
def sweep_turns() -> dict[str, int]:
    """Interrupt turns whose worker died and re-enqueue turns whose task was lost."""
    return actions.do_sweep_turns()
