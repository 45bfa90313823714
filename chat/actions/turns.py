"""Turns on the worker's side: claim, lease, finish, interrupt, sweep.

A turn runs at most once: it is claimed by compare-and-set (queued -> running
with a lease). A turn whose lease ran out belonged to a worker that died: it
is marked interrupted and never silently run again.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.actions import executions, replies
from chat.actions.sql import columns, field_names, one_statement
from chat.broadcast import publish_on_commit
from chat.models import Conversation, Message, Turn
from chat.serialize import message_event, turn_event
from codeact_web import metrics


def worker_name() -> str:
    """Host and process id of the worker that claims a turn (computed per call: a
    forking pool runs tasks in children)."""
    return f"{socket.gethostname()}:{os.getpid()}"


# Claim a queued turn in one statement (one round trip on the way to the first
# token): take the sequence numbers (the turn's, then its first reply's), mark the
# turn running with a lease, store the first reply (streaming, empty), and return
# all three rows. A cell the user runs has no reply: it takes one number and the
# reply columns come back empty. Only a turn still queued is claimed, and the
# conversation row is locked before the turn (the order every other writer uses:
# no deadlock). A duplicate delivery that loses the race for the turn row still
# takes its numbers; a client treats the gap as a reason to resync, and finds
# nothing missing.
_CLAIM_SQL = f"""
WITH target AS (
    SELECT conversation_id, CASE WHEN kind = 'cell' THEN 1 ELSE 2 END AS numbers
    FROM chat_turn WHERE id = %(turn)s AND status = 'queued'
), bumped AS (
    UPDATE chat_conversation SET last_seq = last_seq + target.numbers, updated_at = %(now)s
    FROM target WHERE chat_conversation.id = target.conversation_id
    RETURNING {columns(Conversation, "chat_conversation")}, target.numbers
), claimed AS (
    UPDATE chat_turn SET status = 'running', lease_until = %(lease)s, worker = %(worker)s,
        started_at = %(now)s, seq = bumped.last_seq - bumped.numbers + 1
    FROM bumped WHERE chat_turn.id = %(turn)s AND chat_turn.status = 'queued'
    RETURNING {columns(Turn, "chat_turn")}
), reply AS (
    INSERT INTO chat_message
        (conversation_id, turn_id, seq, role, content, status, final, code, created_at, updated_at)
    SELECT conversation_id, id, seq + 1, 'assistant', '', 'streaming', false, '',
        %(now)s, %(now)s
    FROM claimed WHERE kind = 'answer'
    RETURNING id, seq
)
SELECT reply.id, reply.seq, {columns(Turn, "claimed")}, {columns(Conversation, "bumped")}
FROM claimed CROSS JOIN bumped LEFT JOIN reply ON true
"""

# The order _CLAIM_SQL returns the turn's and the conversation's columns in.
_TURN_FIELDS = field_names(Turn)
_CONVERSATION_FIELDS = field_names(Conversation)


@dataclass(frozen=True)
class Claim:
    """A turn this worker now runs, with its conversation loaded, and its first
    reply, stored (streaming, empty) in the same statement as the claim (None for
    a cell the user runs: the model is not asked)."""

    turn: Turn
    first_reply: Message | None


def claim_turn(turn_id: int) -> Claim | None:
    """Compare-and-set a queued turn to running with a lease; None if not ours to run.

    A turn found running with an expired lease belonged to a worker that died:
    it is marked interrupted (and never silently re-run).
    """
    now = timezone.now()
    params: dict[str, Any] = {
        "now": now,
        "turn": turn_id,
        "lease": Turn.lease_expiry(),
        "worker": worker_name(),
    }
    with one_statement(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
    if row is None:
        stale = Turn.objects.filter(
            pk=turn_id, status=Turn.Status.RUNNING, lease_until__lt=now
        ).first()
        if stale is not None:
            do_interrupt_turn(stale)
        return None
    split = 2 + len(_TURN_FIELDS)
    turn = Turn.from_db(connection.alias, _TURN_FIELDS, row[2:split])
    fields = row[split : split + len(_CONVERSATION_FIELDS)]  # then bumped's `numbers`
    turn.conversation = Conversation.from_db(connection.alias, _CONVERSATION_FIELDS, fields)
    if row[0] is None:  # a cell the user runs
        publish_on_commit(turn.conversation_id, turn_event(turn))
        return Claim(turn, None)
    reply = Message(
        id=row[0],
        conversation=turn.conversation,
        turn=turn,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        seq=row[1],
        created_at=now,
        updated_at=now,
    )
    publish_on_commit(turn.conversation_id, turn_event(turn), message_event(reply))
    return Claim(turn, reply)


def renew_leases(turn_ids: list[int]) -> set[int]:
    """Renew the leases of these running turns; returns the ones still held.

    A turn missing from the answer was closed meanwhile (the sweeper found its
    lease run out, or it ended): its thread must stop and write nothing more.
    """
    if not turn_ids:
        return set()
    with one_statement(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE chat_turn SET lease_until = %s WHERE id = ANY(%s) AND status = 'running' "
            "RETURNING id",
            [Turn.lease_expiry(), list(turn_ids)],
        )
        return {int(row[0]) for row in cursor.fetchall()}


def ended_turns(turn_ids: set[int]) -> set[int]:
    """Which of these turns their own runner ended (done, failed, stopped), as
    opposed to the sweeper (interrupted) or a deletion (gone)."""
    ended = (Turn.Status.DONE, Turn.Status.FAILED, Turn.Status.STOPPED)
    return set(Turn.objects.filter(pk__in=turn_ids, status__in=ended).values_list("pk", flat=True))


def stopped_turns(turn_ids: list[int]) -> set[int]:
    """Which of these turns the user asked to stop. Polled five times a second by
    each worker process for all its running turns: plain SQL, not a query the ORM
    would compile each time."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM chat_turn WHERE id = ANY(%s) AND stop_requested", [list(turn_ids)]
        )
        return {int(row[0]) for row in cursor.fetchall()}


def do_record_settings(
    turn: Turn, temperature: float, max_tokens: int, max_executions: int
) -> None:
    """Keep the settings the model answers this turn with (they can change later)."""
    turn.temperature, turn.max_tokens, turn.max_executions = (
        temperature,
        max_tokens,
        max_executions,
    )
    Turn.objects.filter(pk=turn.pk).update(
        temperature=temperature, max_tokens=max_tokens, max_executions=max_executions
    )


def close_turn(turn: Turn, status: str, code: str = "", error: str = "") -> Turn:
    """End a turn inside the caller's transaction (it holds the conversation's lock)."""
    turn.status = status
    turn.error_code = code
    turn.error = error
    turn.lease_until = None
    turn.finished_at = timezone.now()
    turn.seq = turn.conversation.next_seq()
    turn.save(update_fields=["status", "error_code", "error", "lease_until", "finished_at", "seq"])
    # Counted once the close commits (a rolled-back close ended nothing), and
    # before the event goes out, so a client that saw the end finds it counted.
    ran = (turn.finished_at - turn.started_at).total_seconds() if turn.started_at else None
    transaction.on_commit(functools.partial(metrics.turn_finished, str(status), ran))
    publish_on_commit(turn.conversation_id, turn_event(turn))
    return turn


def do_finish_turn(turn: Turn, status: str, code: str = "", error: str = "") -> Turn:
    """End a turn: done, stopped, or failed with a code and a sentence for the user."""
    with transaction.atomic():
        return close_turn(turn, status, code, error)


def do_interrupt_turn(turn: Turn) -> None:
    """Close a turn whose worker vanished: partial replies are kept and marked."""
    with transaction.atomic():
        locked = Turn.objects.select_for_update().select_related("conversation").get(pk=turn.pk)
        if locked.status != Turn.Status.RUNNING:
            return
        if locked.lease_until is not None and locked.lease_until >= timezone.now():
            return  # renewed since the caller saw it expire: its worker is alive
        replies.interrupt_streaming(locked)
        executions.mark_lost(locked)
        close_turn(
            locked,
            Turn.Status.INTERRUPTED,
            "worker_lost",
            "The worker running this reply stopped unexpectedly. What was written so far "
            "is kept; nothing was run again. Press Retry to ask again.",
        )


@dataclass
class Sweep:
    interrupted: int = 0
    requeue: list[int] = field(default_factory=list)  # queued turns whose task was lost


# Queued turns left waiting longer than the retry period, and not sent again within
# it, oldest first and a bounded batch; marked as sent in the same statement, so
# two sweeps running at once never both send one turn. While the workers are down
# a turn is sent again once a period, not at every sweep.
_REQUEUE_SQL = """
UPDATE chat_turn SET requeued_at = %(now)s
WHERE id IN (
    SELECT id FROM chat_turn
    WHERE status = 'queued' AND created_at < %(stale)s
        AND (requeued_at IS NULL OR requeued_at < %(stale)s)
    ORDER BY id LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""


def do_sweep_turns() -> Sweep:
    """Interrupt turns whose lease expired; list the queued turns whose task was lost.

    The caller enqueues those again. That is safe because a turn is claimed by
    compare-and-set: a duplicate task finds it claimed and does nothing.
    """
    now = timezone.now()
    expired = list(Turn.objects.filter(status=Turn.Status.RUNNING, lease_until__lt=now))
    for turn in expired:
        do_interrupt_turn(turn)
    params: dict[str, Any] = {
        "now": now,
        "stale": now - timedelta(seconds=settings.CODEACT_QUEUED_TURN_RETRY_SECONDS),
        "batch": settings.CODEACT_SWEEP_REQUEUE_BATCH,
    }
    with one_statement(), connection.cursor() as cursor:
        cursor.execute(_REQUEUE_SQL, params)
        requeue = sorted(int(row[0]) for row in cursor.fetchall())
    return Sweep(interrupted=len(expired), requeue=requeue)
