"""The user's messages: send, edit, regenerate, run a cell, retry and stop. The only
place that enqueues a turn.

A turn is handed to the worker by task name after the transaction commits,
so the web side never imports the worker (and the worker's task reads a row
that exists).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from chat.actions import quotas
from chat.actions.errors import ActionError
from chat.actions.sql import one_statement
from chat.actions.turns import close_turn
from chat.broadcast import publish_on_commit
from chat.models import Conversation, Message, Turn
from chat.serialize import conversation_event, message_event, turn_event
from codeact_web.celery import app as celery_app

RUN_TURN = "chat.tasks.run_turn"  # the task's registered name (chat.tasks uses it)

TURN_IN_PROGRESS = (
    "The assistant is still answering the previous message. Wait for it or press Stop."
)
CELL_REFUSED = (
    "Code can run when the assistant has finished answering (or after you press Stop): "
    "it would share the Python session with the assistant's own code."
)
NOT_EDITABLE = "Only your last message can be edited or answered again."


def send_turn(turn_id: int) -> None:
    """Hand a queued turn to a worker."""
    celery_app.send_task(RUN_TURN, args=[turn_id])


def _send_turn_on_commit(turn_id: int) -> None:
    transaction.on_commit(lambda: send_turn(turn_id))


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= 60 else words[:57].rsplit(" ", 1)[0] + "…"


# The user's message and its queued turn in one statement (one round trip on the way
# to the first token): take the numbers (message, the title when this is the first
# message, the turn), store the message, queue the turn.
_SEND_SQL = """
WITH bumped AS (
    UPDATE chat_conversation SET
        last_seq = last_seq + %(count)s,
        updated_at = %(now)s,
        title = CASE WHEN %(first)s THEN %(title)s ELSE title END,
        seq = CASE WHEN %(first)s THEN last_seq + 2 ELSE seq END
    WHERE id = %(conversation)s
    RETURNING last_seq
), message AS (
    INSERT INTO chat_message
        (conversation_id, seq, role, content, status, final, code, created_at, updated_at)
    SELECT %(conversation)s, last_seq - %(count)s + 1, 'user', %(text)s, 'complete', false, '',
        %(now)s, %(now)s
    FROM bumped
    RETURNING id
)
INSERT INTO chat_turn (conversation_id, user_message_id, seq, status, model, stop_requested,
    worker, error_code, error, created_at)
SELECT %(conversation)s, message.id, bumped.last_seq, 'queued', %(model)s, false, '', '', '',
    %(now)s
FROM bumped, message
RETURNING user_message_id, id, seq
"""


def _check_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise ActionError("empty_message", "The message is empty.")
    if len(text) > settings.CODEACT_MAX_MESSAGE_CHARS:
        raise ActionError(
            "message_too_long",
            f"The message is {len(text):,} characters long; the limit is "
            f"{settings.CODEACT_MAX_MESSAGE_CHARS:,}.",
        )
    return text


@contextlib.contextmanager
def _quota_checked(conversation: Conversation) -> Iterator[None]:
    """The turn quotas checked and the new turn stored in one transaction, under
    the owner's row lock: two sends at once are counted one after the other.
    Without turn quotas, the send stays one statement (no BEGIN/COMMIT)."""
    if not quotas.turn_quotas_enabled():
        with one_statement():
            yield
        return
    with transaction.atomic():
        quotas.check_new_turn(conversation.owner_id)
        yield


def do_send_user_message(
    conversation: Conversation, text: str, *, headless: bool = False
) -> tuple[Message, Turn]:
    """Persist the user's message and a queued turn, then start the worker on commit.

    Refused with ActionError("turn_in_progress") while a turn of this
    conversation is queued or running: nothing is stored in that case.
    `headless`: the operator's command runs the turn in its own process
    (chat.worker.headless): no task is sent, and the turn quotas, which share
    the service among the users of the web, do not apply.
    """
    text = _check_text(text)
    default_title = Conversation._meta.get_field("title").default
    # The first question names the conversation (cells run before it do not).
    first = (
        conversation.title == default_title
        and not conversation.messages.exclude(code=Message.CELL).exists()
    )
    title = _title_from(text) if first else ""
    now = timezone.now()
    count = 3 if first else 2
    params: dict[str, Any] = {
        "conversation": conversation.id,
        "count": count,
        "first": first,
        "title": title,
        "text": text,
        "model": conversation.model,
        "now": now,
    }
    checked = one_statement() if headless else _quota_checked(conversation)
    try:
        with checked, connection.cursor() as cursor:
            # A turn already queued or running is caught by the one-active-turn
            # constraint and the whole statement fails: nothing is stored.
            cursor.execute(_SEND_SQL, params)
            row = cursor.fetchone()
    except IntegrityError:
        raise ActionError("turn_in_progress", TURN_IN_PROGRESS) from None
    if row is None:
        raise Http404("No such conversation")
    message_id, turn_id, last = row
    conversation.last_seq = last
    message = Message(
        id=message_id,
        conversation=conversation,
        role=Message.Role.USER,
        content=text,
        status=Message.Status.COMPLETE,
        seq=last - count + 1,
        created_at=now,
        updated_at=now,
    )
    turn = Turn(
        id=turn_id,
        conversation=conversation,
        user_message=message,
        model=conversation.model,
        seq=last,
        created_at=now,
    )
    events: list[Any] = [message_event(message)]
    if first:
        conversation.title, conversation.seq = title, last - 1
        events.append(conversation_event(conversation))
    publish_on_commit(conversation.id, *events, turn_event(turn))
    if not headless:
        _send_turn_on_commit(turn.pk)
    return message, turn


def _check_code(code: str) -> str:
    if not code.strip():
        raise ActionError("empty_cell", "The cell is empty.")
    if len(code) > settings.CODEACT_MAX_MESSAGE_CHARS:
        raise ActionError(
            "cell_too_long",
            f"The cell is {len(code):,} characters long; the limit is "
            f"{settings.CODEACT_MAX_MESSAGE_CHARS:,}.",
        )
    return code.strip("\n").rstrip()


def do_run_user_cell(conversation: Conversation, code: str) -> tuple[Message, Turn]:
    """Store a cell the user runs (a user message holding the code) and a queued
    `cell` turn: a worker runs it in the conversation's kernel, as it runs the
    assistant's code, and the next prompt tells the model what the user ran and saw.

    Refused (nothing stored) while a turn of this conversation is queued or running.
    """
    code = _check_code(code)
    try:
        with transaction.atomic():
            quotas.check_new_turn(conversation.owner_id)
            message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER,
                content=code,
                code=Message.CELL,
                seq=conversation.next_seq(),
            )
            turn = Turn.objects.create(
                conversation=conversation,
                user_message=message,
                kind=Turn.Kind.CELL,
                model=conversation.model,
                seq=conversation.next_seq(),
            )
            publish_on_commit(conversation.id, message_event(message), turn_event(turn))
            _send_turn_on_commit(turn.pk)
    except IntegrityError:
        raise ActionError("turn_in_progress", CELL_REFUSED) from None
    return message, turn


def last_question(conversation: Conversation) -> Message | None:
    """The user's last message that is not superseded (cells they ran are not questions)."""
    return (
        conversation.messages.filter(role=Message.Role.USER, superseded_at__isnull=True)
        .exclude(code=Message.CELL)
        .order_by("-id")
        .first()
    )


def do_resend(
    conversation: Conversation, message_id: int, text: str | None = None
) -> tuple[Message, Turn]:
    """Edit the last question (`text`) or answer it again (`text` None).

    History is not rewritten: the question and every reply to it stay, marked
    superseded (shown as an earlier version, never sent to the model again), and
    the question is sent anew, as a new message after anything since (cells the
    user ran after the answer stay in the model's view). The kernel is not rolled
    back: variables the superseded answer's code made are still there.
    """
    if text is not None:
        text = _check_text(text)
    try:
        with transaction.atomic():
            # Lock the conversation first (as every writer does) and check under it.
            seq = conversation.next_seq()
            if conversation.turns.filter(status__in=Turn.ACTIVE).exists():
                raise ActionError("turn_in_progress", TURN_IN_PROGRESS)
            question = last_question(conversation)
            if question is None or question.pk != message_id:
                raise ActionError("not_editable", NOT_EDITABLE)
            now = timezone.now()
            earlier = conversation.messages.filter(
                Q(pk=question.pk) | Q(turn__user_message=question), superseded_at__isnull=True
            )
            earlier_ids = list(earlier.values_list("pk", flat=True))
            Message.objects.filter(pk__in=earlier_ids).update(superseded_at=now, seq=seq)
            publish_on_commit(
                conversation.id,
                *(message_event(m) for m in Message.objects.filter(pk__in=earlier_ids)),
            )
            return do_send_user_message(conversation, question.content if text is None else text)
    except IntegrityError:
        raise ActionError("turn_in_progress", TURN_IN_PROGRESS) from None


def do_retry_turn(conversation: Conversation, turn_id: int) -> Turn:
    """Answer the same user message again after a failed, interrupted or stopped turn."""
    try:
        with transaction.atomic():
            quotas.check_new_turn(conversation.owner_id)
            last = conversation.turns.order_by("-id").first()
            if last is None or last.pk != turn_id:
                raise ActionError("not_retryable", "Only the most recent turn can be retried.")
            if last.status not in (
                Turn.Status.FAILED,
                Turn.Status.INTERRUPTED,
                Turn.Status.STOPPED,
            ):
                raise ActionError(
                    "not_retryable", f"This turn is {last.status}; there is nothing to retry."
                )
            # The insert fails with IntegrityError (the one-active-turn constraint)
            # while another turn is queued or running.
            turn = Turn.objects.create(
                conversation=conversation,
                user_message=last.user_message,
                kind=last.kind,  # a cell that could not run is run again, not answered
                model=conversation.model,
                seq=conversation.next_seq(),
            )
            publish_on_commit(conversation.id, turn_event(turn))
            _send_turn_on_commit(turn.pk)
            return turn
    except IntegrityError:
        raise ActionError("turn_in_progress", TURN_IN_PROGRESS) from None


def do_request_stop(conversation: Conversation) -> Turn | None:
    """Ask the running (or queued) turn to stop; the worker ends it as `stopped`."""
    with transaction.atomic():
        turn = conversation.turns.filter(status__in=Turn.ACTIVE).first()
        if turn is None:
            return None
        if turn.status == Turn.Status.QUEUED:
            # Lock in the order claim and send do (the conversation, then the
            # turn), or a Stop at the instant of a claim deadlocks with it.
            list(Conversation.objects.select_for_update().filter(pk=conversation.pk).values("pk"))
            queued = Turn.objects.select_for_update().filter(pk=turn.pk, status=turn.status).first()
            if queued is not None:
                return close_turn(queued, Turn.Status.STOPPED)
            # Claimed meanwhile: the worker sees the request and stops it.
        Turn.objects.filter(pk=turn.pk, status__in=Turn.ACTIVE).update(stop_requested=True)
    return turn
