"""The agent loop: Django-free, synchronous, driven through three interfaces.

A model client streams text, a sink receives what happens (and persists or
broadcasts it), and `should_stop` says when the user pressed Stop. The
CodeAct actions (code execution) plug into this loop; a reply without an
action is the final answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chat.agent.model import ChatMessage, ModelClient, Reply

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and concisely; use Markdown for "
    "lists, tables and code."
)


class Sink(Protocol):
    def reply_started(self) -> None: ...
    def reply_text(self, delta: str) -> None: ...
    def reply_finished(self, reply: Reply) -> None: ...


@dataclass
class Outcome:
    stopped: bool
    replies: list[Reply]


def build_messages(history: list[ChatMessage], system_prompt: str) -> list[ChatMessage]:
    return [{"role": "system", "content": system_prompt}, *history]


def run_agent(
    model: ModelClient,
    history: list[ChatMessage],
    sink: Sink,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> Outcome:
    """Run one user turn to its end and report every step to the sink.

    A ModelError propagates; the sink has already seen every delta, so it
    knows how far the reply got.
    """
    messages = build_messages(history, system_prompt)
    sink.reply_started()
    reply = model.stream(messages, sink.reply_text, should_stop=should_stop)
    sink.reply_finished(reply)
    return Outcome(stopped=reply.stopped, replies=[reply])
