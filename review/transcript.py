"""A conversation turn by turn as a reviewer reads it: each reply with its code
cell, the cell's outputs, sizes and limits, and the ratings it got; which model
wrote each reply and the settings each turn ran with (the conversation's model
key alone cannot say, as the configuration behind a key can change)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models.functions import Length

from chat.agent.text import human_size, strip_ansi
from chat.exports import model_names, settings_words, writer_of
from chat.labels import cell_status
from chat.models import Conversation, Execution, Feedback, Message, Output, Turn, WebRequest
from chat.rendering import (
    highlight_code,
    render_markdown,
    reply_ran_code,
    sanitize_table_html,
    shown_text,
)
from review.queries import FAILED_EXECUTIONS


@dataclass
class OutputView:
    output: Output
    kind: str  # stream, error, image, html, text
    text: str = ""
    html: str = ""
    size: int = 0


@dataclass
class ExecutionView:
    execution: Execution
    code_html: str
    status_label: str
    outputs: list[OutputView]
    text_chars: int
    image_bytes: int
    limits_summary: str = ""
    limits: list[tuple[str, str]] = field(default_factory=list)
    web: list[WebRequest] = field(default_factory=list)  # through the egress proxy

    @property
    def web_refused(self) -> int:
        return sum(1 for r in self.web if r.refused)


@dataclass
class Step:
    message: Message
    html: str
    seconds: float | None
    execution: ExecutionView | None = None
    feedback: list[Feedback] = field(default_factory=list)
    # Which model wrote this reply ("Qwen/… · host:port · fence"); "" where it is
    # not a reply or the turn's previous reply had the same writer.
    writer: str = ""


@dataclass
class TurnView:
    turn: Turn
    question: Message
    steps: list[Step]
    seconds: float | None
    cell: ExecutionView | None = None  # a cell the user ran (its turn asks no model)

    @property
    def model_names(self) -> list[str]:
        """The model names recorded on this turn's replies (one, unless it changed)."""
        return model_names(s.message for s in self.steps)

    @property
    def has_replies(self) -> bool:
        """The model wrote something in this turn (a notice alone is not a reply)."""
        return any(s.message.role == Message.Role.ASSISTANT for s in self.steps)

    @property
    def asks_model(self) -> bool:
        """The model was asked: not a cell the user ran."""
        return self.turn.kind != Turn.Kind.CELL

    @property
    def settings(self) -> str:
        """The turn's recorded settings in words ("" if none were recorded)."""
        return " · ".join(settings_words(self.turn))


NAME_NOT_RECORDED = "model name not recorded"


def writer_label(message: Message) -> str:
    """Which model wrote a reply, compactly: model name · endpoint · action format.
    A reply from before these were kept says so instead of naming a model (its
    conversation's key may now stand for another one)."""
    if not message.model_name:
        return " · ".join(
            p for p in (NAME_NOT_RECORDED, message.endpoint, message.action_format) if p
        )
    return " · ".join(
        (
            message.model_name,
            message.endpoint or "endpoint not recorded",
            message.action_format or "format not recorded",
        )
    )


def _output_view(output: Output) -> OutputView:
    if output.output_type == Output.Type.STREAM:
        return OutputView(output, "stream", text=strip_ansi(output.text), size=len(output.text))
    if output.output_type == Output.Type.ERROR:
        traceback = "\n".join(str(line) for line in output.data.get("traceback", []))
        text = strip_ansi(traceback or output.text) or (
            f"{output.data.get('ename', '')}: {output.data.get('evalue', '')}"
        )
        return OutputView(output, "error", text=text, size=len(text))
    if output.image_mime:
        return OutputView(output, "image", size=output.image_size)  # type: ignore[attr-defined]
    if "text/html" in output.data:
        html = sanitize_table_html(str(output.data["text/html"]))
        return OutputView(output, "html", html=html, size=len(html))
    text = strip_ansi(str(output.data.get("text/plain", "")))
    return OutputView(output, "text", text=text, size=len(text))


def _limit_value(name: str, value: Any) -> str:
    if name.endswith("_bytes") and isinstance(value, int):
        return human_size(value)
    if name.endswith("timeout") or name.endswith("grace"):
        return f"{value} s"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def limits_view(limits: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The limits a cell ran under: a one-line summary and every item."""
    items = [(k.replace("_", " "), _limit_value(k, v)) for k, v in sorted(limits.items())]
    summary = []
    if "cpus" in limits:
        summary.append(f"{limits['cpus']} CPU")
    if "memory_bytes" in limits:
        summary.append(f"{_limit_value('memory_bytes', limits['memory_bytes'])} memory")
    if "cell_timeout" in limits:
        summary.append(f"{limits['cell_timeout']} s per cell")
    return ", ".join(summary) or "recorded", items


def _seconds(start: Any, end: Any) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _execution_view(
    execution: Execution, views: list[OutputView], web: list[WebRequest]
) -> ExecutionView:
    summary, limits = limits_view(execution.limits or {})
    return ExecutionView(
        web=web,
        execution=execution,
        code_html=highlight_code(execution.code),
        status_label=cell_status(execution.status),
        outputs=views,
        text_chars=sum(v.size for v in views if v.kind != "image"),
        image_bytes=sum(v.size for v in views if v.kind == "image"),
        limits_summary=summary,
        limits=limits,
    )


def _outputs_by_execution(conversation: Conversation) -> dict[int, list[OutputView]]:
    outputs: dict[int, list[OutputView]] = {}
    for o in (
        Output.objects.filter(conversation=conversation)
        .defer("image")
        .annotate(image_size=Length("image"))
        .order_by("execution_id", "index")
    ):
        outputs.setdefault(o.execution_id, []).append(_output_view(o))
    return outputs


def transcript_turns(conversation: Conversation) -> list[TurnView]:
    """The conversation turn by turn, each reply with its execution and outputs."""
    outputs = _outputs_by_execution(conversation)
    web: dict[int, list[WebRequest]] = {}
    for request in conversation.web_requests.exclude(execution=None):
        web.setdefault(request.execution_id or 0, []).append(request)
    executions = {
        e.message_id: e for e in conversation.executions.select_related("sandbox").order_by("id")
    }
    feedback: dict[int, list[Feedback]] = {}
    for f in conversation.feedback.select_related("user"):
        feedback.setdefault(f.message_id, []).append(f)
    messages = list(conversation.messages.order_by("id"))
    by_id = {m.pk: m for m in messages}
    replies: dict[int, list[Message]] = {}
    for m in messages:
        if m.turn_id is not None:
            replies.setdefault(m.turn_id, []).append(m)
    result = []
    for turn in conversation.turns.order_by("id"):
        steps = []
        writer: dict[str, str] | None = None  # of the turn's previous reply
        for m in replies.get(turn.pk, []):
            step = Step(
                message=m,
                html=render_markdown(
                    shown_text(
                        m.role, m.content, m.action_format, reply_ran_code(m.final, m.status)
                    )
                ),
                seconds=_seconds(m.created_at, m.updated_at),
                feedback=feedback.get(m.pk, []),
            )
            if m.role == Message.Role.ASSISTANT:
                if writer_of(m) != writer:
                    step.writer = writer_label(m)
                writer = writer_of(m)
            execution = executions.get(m.pk)
            if execution is not None:
                step.execution = _execution_view(
                    execution, outputs.get(execution.pk, []), web.get(execution.pk, [])
                )
            steps.append(step)
        question = by_id.get(turn.user_message_id)
        if question is None:
            continue
        view = TurnView(
            turn=turn,
            question=question,
            steps=steps,
            seconds=_seconds(turn.started_at or turn.created_at, turn.finished_at),
        )
        cell = executions.get(question.pk) if turn.kind == Turn.Kind.CELL else None
        if cell is not None:
            view.cell = _execution_view(cell, outputs.get(cell.pk, []), web.get(cell.pk, []))
        result.append(view)
    return result


def writers(turns: list[TurnView]) -> list[tuple[str, int]]:
    """Who wrote the conversation's replies: each model name and endpoint (or that
    they were not recorded) with its number of replies, in order of first reply."""
    counts: dict[str, int] = {}
    for t in turns:
        for s in t.steps:
            if s.message.role == Message.Role.ASSISTANT:
                m = s.message
                label = NAME_NOT_RECORDED
                if m.model_name:
                    label = " · ".join(p for p in (m.model_name, m.endpoint) if p)
                counts[label] = counts.get(label, 0) + 1
    return list(counts.items())


def summary(turns: list[TurnView]) -> dict[str, Any]:
    """Counts for the transcript's header: turns, cells, errors, sandbox time, tokens,
    and the models that wrote the replies."""
    executions = [s.execution.execution for t in turns for s in t.steps if s.execution]
    executions += [t.cell.execution for t in turns if t.cell]
    tokens = {"prompt": 0, "completion": 0}
    for t in turns:
        for s in t.steps:
            for key in tokens:
                tokens[key] += int((s.message.usage or {}).get(f"{key}_tokens") or 0)
    return {
        "turns": len(turns),
        "executions": len(executions),
        "errors": sum(e.status in FAILED_EXECUTIONS for e in executions),
        "sandbox_seconds": sum(e.duration or 0.0 for e in executions),
        "tokens": tokens,
        "writers": writers(turns),
        "model_names": model_names(s.message for t in turns for s in t.steps),
    }
