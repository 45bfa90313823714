"""Code cells (executions) and their outputs.

Outputs arrive as nbformat-shaped dicts, already held to the cell limits by
the sandbox layer. Consecutive text on one stream is one row: a batch that
continues it is appended in the database and announced as an `output_delta`.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from chat.broadcast import publish_on_commit
from chat.events import utf16_len
from chat.models import Execution, Message, Output, Turn
from chat.serialize import execution_event, output_event
from codeact_web import metrics

TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
LOST_DETAIL = (
    "The worker running this code stopped. The code may or may not have finished; "
    "it was not run again."
)


def do_start_execution(
    turn: Turn,
    message: Message,
    code: str,
    limits: dict[str, Any],
    origin: str = Execution.Origin.AGENT,
) -> Execution:
    """Store a running cell for the reply's code (or the user's own cell, origin
    `user`), with the limits it runs under."""
    with transaction.atomic():
        seq = turn.conversation.next_seq()  # also locks the conversation: numbers stay unique
        number = Execution.objects.filter(conversation_id=turn.conversation_id).count() + 1
        execution = Execution.objects.create(
            conversation_id=turn.conversation_id,
            turn=turn,
            message=message,
            code=code,
            origin=origin,
            number=number,
            seq=seq,
            limits=limits,
        )
        publish_on_commit(turn.conversation_id, execution_event(execution))
    return execution


def close_execution(execution: Execution, status: str, detail: str, **fields: Any) -> None:
    """Record how a cell ended, inside the caller's transaction."""
    execution.status = status
    execution.detail = detail
    execution.finished_at = timezone.now()
    if execution.duration is None:
        execution.duration = (execution.finished_at - execution.started_at).total_seconds()
    for name, value in fields.items():
        setattr(execution, name, value)
    execution.seq = execution.conversation.next_seq()
    execution.save()
    # A cell that never ran, or was cut off, has no run time worth a histogram.
    ran = status not in (Execution.Status.FAILED, Execution.Status.LOST)
    transaction.on_commit(
        functools.partial(metrics.cell_finished, str(status), execution.duration if ran else None)
    )
    publish_on_commit(execution.conversation_id, execution_event(execution))


def do_finish_execution(
    execution: Execution,
    *,
    status: str,
    detail: str,
    execution_count: int | None,
    duration: float,
    kernel_restarted: bool,
    dropped: dict[str, int],
    observation: str,
    sandbox_id: int | None,
) -> Execution:
    """Record how the code ended and exactly what the model was told about it."""
    with transaction.atomic():
        close_execution(
            execution,
            status,
            detail,
            execution_count=execution_count,
            duration=duration,
            kernel_restarted=kernel_restarted,
            observation=observation,
            sandbox_id=sandbox_id,
            dropped={key: value for key, value in dropped.items() if value},
        )
    return execution


def do_fail_execution(execution: Execution, detail: str) -> Execution:
    """The code could not run at all (no sandbox); it never started."""
    with transaction.atomic():
        close_execution(execution, Execution.Status.FAILED, detail)
    return execution


def mark_lost(turn: Turn, detail: str = LOST_DETAIL) -> None:
    """Cells still running when their worker vanished end as `lost`: they may or
    may not have finished, and are never run again (in the caller's transaction)."""
    for execution in turn.executions.filter(status=Execution.Status.RUNNING):
        execution.conversation = turn.conversation
        close_execution(execution, Execution.Status.LOST, detail)


def do_lose_executions(turn: Turn, detail: str) -> None:
    """The turn's running cells end as `lost`, for this reason: their runner lost
    track of them (its database went away mid-cell)."""
    with transaction.atomic():
        mark_lost(turn, detail)


@dataclass
class StreamTail:
    """Where an execution's outputs stand: text on the same stream extends the last row."""

    output: Output | None = None
    length: int = 0  # of the last stream row's text, in UTF-16 code units
    next_index: int = 0


def _merge_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and out.get("output_type") == "stream"
            and last.get("output_type") == "stream"
            and last.get("name") == out.get("name")
        ):
            merged[-1] = {**last, "text": str(last["text"]) + str(out.get("text", ""))}
        else:
            merged.append(out)
    return merged


def _image(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle's image as bytes. The sandbox layer leaves at most one image in
    a bundle (the preferred format of those it knows)."""
    for mime, value in bundle.items():
        if not str(mime).startswith("image/"):
            continue
        raw = str(value)
        try:
            image = (
                raw.encode() if mime == "image/svg+xml" else base64.b64decode(raw, validate=True)
            )
        except (binascii.Error, ValueError):
            continue
        return {"image": image, "image_mime": str(mime)}
    return {}


def _rich_fields(out: dict[str, Any]) -> dict[str, Any]:
    if out.get("output_type") == "error":
        traceback = [str(line) for line in out.get("traceback") or []]
        return {
            "data": {
                "ename": str(out.get("ename", "")),
                "evalue": str(out.get("evalue", "")),
                "traceback": traceback,
            },
            "text": "\n".join(traceback),
        }
    raw_bundle = out.get("data")
    bundle: dict[str, Any] = raw_bundle if isinstance(raw_bundle, dict) else {}
    return {"data": {m: str(bundle[m]) for m in TEXT_MIMES if m in bundle}} | _image(bundle)


def _append_to_tail(execution: Execution, tail: StreamTail, text: str, seq: int) -> None:
    assert tail.output is not None
    Output.objects.filter(pk=tail.output.pk).update(text=Concat(F("text"), Value(text)), seq=seq)
    publish_on_commit(
        execution.conversation_id,
        {
            "type": "output_delta",
            "seq": seq,
            "output_id": tail.output.pk,
            "execution_id": execution.pk,
            "offset": tail.length,
            "text": text,
        },
    )
    tail.length += utf16_len(text)


def do_record_outputs(
    execution: Execution, outputs: list[dict[str, Any]], tail: StreamTail
) -> None:
    """Persist a batch of a running cell's outputs, then notify.

    Text on the stream of the last row is appended to it and announced as an
    `output_delta`; anything else becomes a new row and an `output` event.
    """
    conversation = execution.conversation
    with transaction.atomic():
        for out in _merge_streams(outputs):
            seq = conversation.next_seq()
            if out.get("output_type") == "stream":
                name = "stderr" if out.get("name") == "stderr" else "stdout"
                text = str(out.get("text", ""))
                if tail.output is not None and tail.output.name == name:
                    _append_to_tail(execution, tail, text, seq)
                    continue
                fields: dict[str, Any] = {"name": name, "text": text}
            else:
                fields = _rich_fields(out)
            row = Output.objects.create(
                execution=execution,
                conversation=conversation,
                seq=seq,
                index=tail.next_index,
                output_type=str(out.get("output_type")),
                **fields,
            )
            tail.next_index += 1
            is_stream = row.output_type == Output.Type.STREAM
            tail.output = row if is_stream else None
            tail.length = utf16_len(row.text) if is_stream else 0
            publish_on_commit(conversation.id, output_event(row))
