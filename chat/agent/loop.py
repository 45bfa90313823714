"""The CodeAct loop: Django-free, synchronous, driven through three interfaces.

A model client streams text, an executor runs code in the conversation's
sandbox, and a sink receives every step (and persists or broadcasts it).
`should_stop` says when the user pressed Stop. The action format
(chat.agent.formats) says how the model writes code: a reply without an
action is the final answer; otherwise the code runs, its output goes back to
the model as an observation, and the model continues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chat.agent import codeact
from chat.agent.formats import ActionFormat, ChatMessage, get_format, tool_call_id
from chat.agent.model import ModelClient, Reply
from sandbox.api import ExecutionResult, OnOutput, Output
from sandbox.egress import WebRequest, summary

DEFAULT_MAX_EXECUTIONS = 5
EXECUTE = get_format("execute")


@dataclass
class Executed:
    """What the executor reports about one code action."""

    result: ExecutionResult
    notes: list[str] = field(default_factory=list)  # told to the model before the output
    new_files: list[str] = field(default_factory=list)  # workspace files created or changed
    web: list[WebRequest] = field(default_factory=list)  # what the egress proxy logged


class Executor(Protocol):
    def execute(self, code: str, on_output: OnOutput, poll: Callable[[], bool]) -> Executed:
        """Run code; call `poll` about every 50 ms, and interrupt the cell when it returns True."""
        ...


class Sink(Protocol):
    def reply_started(self) -> None: ...
    def reply_text(self, delta: str) -> None: ...
    def reply_finished(self, reply: Reply, content: str, final: bool) -> None: ...
    def execution_started(self, code: str) -> None: ...
    def execution_output(self, output: Output) -> None: ...
    def execution_finished(self, executed: Executed, observation: str) -> None: ...
    def notice(self, code: str, text: str) -> None: ...


@dataclass
class Outcome:
    stopped: bool
    replies: list[Reply]
    executions: int


def footer_for(executed: Executed) -> list[str]:
    """What the model is told after a cell's output: how it ended, what was dropped,
    the files it saved and the web requests it made."""
    result = executed.result
    lines: list[str] = []
    if result.status == "timeout":
        lines.append(
            f"[The execution was stopped after {result.duration:.0f} seconds: "
            "that is the time limit for one execution.]"
        )
    elif result.status == "interrupted":
        lines.append("[The user stopped this execution.]")
    elif result.status == "died":
        lines.append("[The Python process died (for example, it ran out of memory).]")
    if result.state_lost:
        lines.append(
            "[The Python session was restarted: variables and imports from earlier "
            "executions are lost; files in /workspace are kept.]"
        )
    if result.dropped_stream_bytes:
        lines.append(
            f"[{result.dropped_stream_bytes:,} bytes of printed output were dropped: "
            "print less, or write large results to a file.]"
        )
    if result.dropped_displays or result.dropped_images:
        lines.append(
            f"[{result.dropped_displays + result.dropped_images} displayed items were "
            "dropped because the execution showed too many or too large ones.]"
        )
    if result.dropped_display_bytes:
        lines.append(
            f"[{result.dropped_display_bytes:,} bytes of displayed output or error text were "
            "dropped: show less, or write large results to a file.]"
        )
    if executed.new_files:
        lines.append("[Files saved in /workspace: " + ", ".join(executed.new_files) + "]")
    if executed.web:
        count = len(executed.web)
        refused = sum(1 for item in executed.web if item.refusal)
        head = f"[Web requests through the proxy: {count}" + (
            f", {refused} refused by the deployment's web access policy (do not retry those)"
            if refused
            else ""
        )
        lines.append(head + ":\n" + "\n".join(summary(executed.web)) + "]")
    return lines


def run_agent(
    model: ModelClient,
    history: Sequence[ChatMessage],
    sink: Sink,
    executor: Executor,
    *,
    system_prompt: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_executions: int = DEFAULT_MAX_EXECUTIONS,
    action_format: ActionFormat = EXECUTE,
) -> Outcome:
    """Run one user turn to its end and report every step to the sink.

    `system_prompt` should be one `action_format` wrote (it tells the model how
    to run code; by default, its prompt without files). A ModelError or
    SandboxError propagates; the sink has already seen every step, so it knows
    how far the turn got.
    """
    prompt = action_format.system_prompt() if system_prompt is None else system_prompt
    messages: list[ChatMessage] = [{"role": "system", "content": prompt}, *history]
    calls = sum(1 for message in history if message.get("tool_calls"))
    replies: list[Reply] = []
    executions = 0
    while True:
        watch = action_format.watch(sink.reply_text)
        reply = model.stream(
            messages,
            watch,
            stop=list(action_format.stop) or None,
            tools=list(action_format.tools) or None,
            should_stop=watch.until(should_stop),
            on_start=sink.reply_started,  # stored while the request is under way
        )
        if watch.action_closed:
            reply.stopped = False  # we ended the stream ourselves, at the action's end
        replies.append(reply)
        stopped = reply.stopped
        content = watch.text if stopped else action_format.close(watch.text)
        action = None if stopped else action_format.parse(content, reply.tool_calls)
        if action is not None:
            content = content[: action.end]
        malformed = (
            None if stopped or action else action_format.malformed(reply.tool_calls, content)
        )
        over_limit = action is not None and executions >= max_executions
        sink.reply_finished(reply, content, final=action is None and not stopped)
        if malformed is not None:
            sink.notice("malformed_action", malformed)
        if stopped or action is None:
            return Outcome(stopped, replies, executions)
        if over_limit:
            sink.notice(
                "execution_limit",
                f"The assistant reached the limit of {max_executions} code executions "
                "for one message, so its last code was not run. Send a message to let "
                "it continue.",
            )
            return Outcome(False, replies, executions)
        executions += 1
        sink.execution_started(action.code)
        executed = executor.execute(action.code, sink.execution_output, should_stop)
        footer = footer_for(executed)
        if executions >= max_executions:
            footer.append(
                "[That was the last execution allowed for this message: answer now "
                f"with what you have, {action_format.without_code}.]"
            )
        observed = codeact.observation(executed.result.outputs, executed.notes, footer)
        sink.execution_finished(executed, observed)
        if executed.result.status == "interrupted" and should_stop():
            return Outcome(True, replies, executions)
        calls += 1
        messages.extend(action_format.replay(content, action.code, observed, tool_call_id(calls)))
