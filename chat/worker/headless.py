"""Turns run in this process, for a terminal: `manage.py ask` and the evaluations.

The path is the worker's: the question is stored as the page stores it, the
turn is claimed as a worker claims it, and `TurnRunner` answers it with the
conversation's own sandbox, limits and prompt; everything lands in the
database and reaches an open page as usual. What differs: no task goes to
Celery (this process runs the turn), an `Observer` sees each step as it
happens, and the operator's run is not held to the quotas that share the
service among web users (the per-host sandbox cap still holds).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import close_old_connections

from chat.actions import conversations, files, messages, turns
from chat.agent.formats import ActionFormat
from chat.agent.loop import Executed
from chat.agent.model import Reply
from chat.models import Conversation, Execution, Message, SandboxRecord, Turn
from chat.worker import pool
from chat.worker.runner import TurnRunner
from sandbox.api import Output


class Observer:
    """Sees a headless turn as it runs; every method does nothing unless overridden."""

    def reply_text(self, delta: str) -> None:
        """A piece of the model's reply, as it streams."""

    def reply_finished(self, content: str, final: bool) -> None:
        """A reply ended: `final` when it is the answer, else it ran code."""

    def cell_started(self, code: str) -> None:
        """A cell starts to run (the reply's code, or a function call's)."""

    def cell_output(self, output: Output) -> None:
        """One nbformat output of the running cell, as it comes."""

    def cell_finished(self, status: str, duration: float) -> None:
        """The cell ended: ok, error, timeout, interrupted, died."""

    def notice(self, code: str, text: str) -> None:
        """What the user is told about the turn (a limit, lost state, a bad action)."""


class _Runner(TurnRunner):
    """The worker's runner, telling the observer what its sink is told."""

    def __init__(
        self,
        claim: turns.Claim,
        observer: Observer,
        fmt: ActionFormat | None,
        max_executions: int | None,
    ) -> None:
        super().__init__(claim, action_format=fmt, max_executions=max_executions)
        self.observer = observer

    def reply_text(self, delta: str) -> None:
        super().reply_text(delta)
        self.observer.reply_text(delta)

    def reply_finished(self, reply: Reply, content: str, final: bool) -> None:
        super().reply_finished(reply, content, final)
        self.observer.reply_finished(content, final)

    def execution_started(self, code: str) -> None:
        super().execution_started(code)
        self.observer.cell_started(code)

    def execution_output(self, output: Output) -> None:
        super().execution_output(output)
        self.observer.cell_output(output)

    def execution_finished(self, executed: Executed, observation: str) -> None:
        super().execution_finished(executed, observation)
        self.observer.cell_finished(executed.result.status, executed.result.duration)

    def notice(self, code: str, text: str) -> None:
        super().notice(code, text)
        self.observer.notice(code, text)


@dataclass
class TurnResult:
    """How a headless turn went, read back from the rows it wrote."""

    conversation: Conversation
    turn: Turn
    answer: str  # the final reply's text; "" when the turn gave none
    replies: int
    executions: list[Execution]
    notices: list[str]  # their codes, in order
    prompt_tokens: int | None  # None: the endpoint reported no usage
    completion_tokens: int | None
    wall_time: float

    @property
    def status(self) -> str:
        return str(self.turn.status)


def operator_account(username: str) -> Any:
    """The account a command's conversations belong to, made on first use (it cannot
    sign in: it has no usable password)."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def new_conversation(
    owner: Any, model: str, files_in: Mapping[str, bytes] | None = None, title: str = ""
) -> Conversation:
    """A conversation of `owner` answered by `model`, holding these files."""
    conversation = conversations.do_create_conversation(owner, model, headless=True)
    if title:
        conversations.do_rename_conversation(conversation, title)
    for name, data in (files_in or {}).items():
        add_file(conversation, owner, name, data)
    return conversation


def add_file(conversation: Conversation, owner: Any, name: str, data: bytes) -> str:
    """Upload a file as the page does; its path in /workspace."""
    return files.do_upload_file(conversation, owner, name, data).path


def run_turn(
    conversation: Conversation,
    text: str,
    observer: Observer | None = None,
    action_format: ActionFormat | None = None,
    max_executions: int | None = None,
) -> TurnResult:
    """Ask `text` in the conversation and answer it here, to the end; raises
    ActionError when the conversation cannot take a question now (a turn runs).
    `action_format` and `max_executions` replace the model's own."""
    started = time.monotonic()
    _, queued = messages.do_send_user_message(conversation, text, headless=True)
    claim = turns.claim_turn(queued.pk)
    if claim is None:  # a worker took it first (it cannot: no task was sent)
        raise RuntimeError(f"turn {queued.pk} was claimed by someone else")
    token = pool.operator_run.set(True)
    try:
        _Runner(claim, observer or Observer(), action_format, max_executions).run()
    finally:
        pool.operator_run.reset(token)
        close_old_connections()
    return _result(conversation, queued.pk, time.monotonic() - started)


def _result(conversation: Conversation, turn_id: int, wall_time: float) -> TurnResult:
    turn = Turn.objects.get(pk=turn_id)
    replies = list(turn.replies.filter(role=Message.Role.ASSISTANT).order_by("id"))
    notices = list(
        turn.replies.filter(role=Message.Role.NOTICE).order_by("id").values_list("code", flat=True)
    )
    final = [reply for reply in replies if reply.final]
    usage = [reply.usage for reply in replies if reply.usage]
    return TurnResult(
        conversation=conversation,
        turn=turn,
        answer=final[-1].content if final else "",
        replies=len(replies),
        executions=list(turn.executions.order_by("id")),
        notices=[str(code) for code in notices],
        prompt_tokens=sum(int(u.get("prompt_tokens") or 0) for u in usage) if usage else None,
        completion_tokens=(
            sum(int(u.get("completion_tokens") or 0) for u in usage) if usage else None
        ),
        wall_time=wall_time,
    )


def release_sandbox(conversation: Conversation, reason: str = "released") -> None:
    """Remove the conversation's sandbox now (an evaluation is done with it) rather
    than leave it to the idle reaper."""
    for record in SandboxRecord.objects.filter(
        conversation=conversation, state=SandboxRecord.State.CLAIMED
    ):
        pool.remove(record, reason)


def request_stop(conversation: Conversation) -> None:
    """Ask the conversation's running headless turn to stop (a task's time is up, or
    Ctrl+C, from another thread): its runner sees it within the stop watch's poll
    and ends the turn `stopped`, the cell interrupted."""
    Turn.objects.filter(conversation=conversation, status__in=Turn.ACTIVE).update(
        stop_requested=True
    )
