"""Reviewer pages: a conversation's transcript with its audit trail, flags and
notes, and the staff usage overview. Content needs the review permission and
every transcript view leaves an audit record."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.db.models.functions import Length
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chat import exports, review
from chat.actions import ActionError
from chat.agent import codeact
from chat.models import (
    AuditRecord,
    Conversation,
    Execution,
    Feedback,
    Message,
    Output,
    Turn,
    WorkspaceFile,
)
from chat.rendering import highlight_code, render_markdown, sanitize_table_html
from chat.views import attachment, no_sniff

CELL_STATUS = {
    "running": "Running",
    "ok": "Done",
    "error": "Error",
    "timeout": "Timed out",
    "interrupted": "Stopped",
    "died": "Kernel died",
    "lost": "Cut off",
    "failed": "Not run",
}


def _require(request: HttpRequest, allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied("You do not have permission to review conversations.")


def _reviewer(request: HttpRequest) -> None:
    _require(request, review.can_review(request.user))


# ---- transcript -----------------------------------------------------------------------


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


@dataclass
class Step:
    message: Message
    html: str
    seconds: float | None
    execution: ExecutionView | None = None
    feedback: list[Feedback] = field(default_factory=list)


@dataclass
class TurnView:
    turn: Turn
    question: Message
    steps: list[Step]
    seconds: float | None


def _output_view(output: Output) -> OutputView:
    if output.output_type == Output.Type.STREAM:
        text = codeact.strip_ansi(output.text)
        return OutputView(output, "stream", text=text, size=len(output.text))
    if output.output_type == Output.Type.ERROR:
        traceback = "\n".join(str(line) for line in output.data.get("traceback", []))
        text = codeact.strip_ansi(traceback or output.text) or (
            f"{output.data.get('ename', '')}: {output.data.get('evalue', '')}"
        )
        return OutputView(output, "error", text=text, size=len(text))
    if output.image_mime:
        return OutputView(output, "image", size=output.image_size)  # type: ignore[attr-defined]
    if "text/html" in output.data:
        html = sanitize_table_html(str(output.data["text/html"]))
        return OutputView(output, "html", html=html, size=len(html))
    text = codeact.strip_ansi(str(output.data.get("text/plain", "")))
    return OutputView(output, "text", text=text, size=len(text))


def _limit_value(name: str, value: Any) -> str:
    if name.endswith("_bytes") and isinstance(value, int):
        return str(filesizeformat(value)).replace("\xa0", " ")
    if name.endswith("timeout") or name.endswith("grace"):
        return f"{value} s"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _limits(limits: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
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


def transcript_turns(conversation: Conversation) -> list[TurnView]:
    """The conversation turn by turn, each reply with its execution and outputs."""
    outputs: dict[int, list[OutputView]] = {}
    for o in (
        Output.objects.filter(conversation=conversation)
        .defer("image")
        .annotate(image_size=Length("image"))
        .order_by("execution_id", "index")
    ):
        outputs.setdefault(o.execution_id, []).append(_output_view(o))
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
        for m in replies.get(turn.pk, []):
            text = (
                codeact.display_text(m.content) if m.role == Message.Role.ASSISTANT else m.content
            )
            step = Step(
                message=m,
                html=render_markdown(text),
                seconds=_seconds(m.created_at, m.updated_at),
                feedback=feedback.get(m.pk, []),
            )
            execution = executions.get(m.pk)
            if execution is not None:
                views = outputs.get(execution.pk, [])
                summary, limits = _limits(execution.limits or {})
                step.execution = ExecutionView(
                    execution=execution,
                    code_html=highlight_code(execution.code),
                    status_label=CELL_STATUS.get(execution.status, execution.status),
                    outputs=views,
                    text_chars=sum(v.size for v in views if v.kind != "image"),
                    image_bytes=sum(v.size for v in views if v.kind == "image"),
                    limits_summary=summary,
                    limits=limits,
                )
            steps.append(step)
        question = by_id.get(turn.user_message_id)
        if question is None:
            continue
        result.append(
            TurnView(
                turn=turn,
                question=question,
                steps=steps,
                seconds=_seconds(turn.started_at or turn.created_at, turn.finished_at),
            )
        )
    return result


@login_required
@require_GET
def transcript(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    _reviewer(request)
    conversation = get_object_or_404(
        Conversation.objects.select_related("owner", "flagged_by"), pk=conversation_id
    )
    review.record(
        request.user, AuditRecord.Action.TRANSCRIPT, [conversation], via="web", request=request
    )
    turns = transcript_turns(conversation)
    executions = [s.execution.execution for t in turns for s in t.steps if s.execution]
    usage_tokens = {"prompt": 0, "completion": 0}
    for t in turns:
        for s in t.steps:
            for key in usage_tokens:
                usage_tokens[key] += int((s.message.usage or {}).get(f"{key}_tokens") or 0)
    context = {
        "conversation": conversation,
        "turns": turns,
        "files": conversation.files.defer("content").order_by("path"),
        "notes": conversation.review_notes.select_related("author"),
        "summary": {
            "turns": len(turns),
            "executions": len(executions),
            "errors": sum(e.status in review.FAILED_EXECUTIONS for e in executions),
            "sandbox_seconds": sum(e.duration or 0.0 for e in executions),
            "tokens": usage_tokens,
        },
        "can_export": review.can_export(request.user),
        "note_max": review.NOTE_MAX,
    }
    response = render(request, "review/transcript.html", context)
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def transcript_image(request: HttpRequest, conversation_id: UUID, output_id: int) -> HttpResponse:
    """A plot on the transcript page (covered by the transcript view's audit record)."""
    _reviewer(request)
    output = get_object_or_404(
        Output, pk=output_id, conversation_id=conversation_id, image__isnull=False
    )
    response = no_sniff(HttpResponse(bytes(output.image or b""), content_type=output.image_mime))
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def download_file(request: HttpRequest, conversation_id: UUID, file_id: int) -> HttpResponse:
    """A workspace file (an upload, or what the code wrote) as its owner would get it.
    Taking a user's data away is an export: it needs the export permission and
    leaves an audit record naming the file and its hash."""
    _require(request, review.can_export(request.user))
    file = get_object_or_404(
        WorkspaceFile.objects.select_related("conversation"),
        pk=file_id,
        conversation_id=conversation_id,
    )
    review.record(
        request.user,
        AuditRecord.Action.DOWNLOAD_FILE,
        [file.conversation],
        via="web",
        detail={"file": file.path, "size": file.size, "sha256": file.sha256},
        request=request,
    )
    response = attachment(
        bytes(file.content), "application/octet-stream", file.path.rsplit("/", 1)[-1]
    )
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_POST
def flag(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    _reviewer(request)
    conversation = get_object_or_404(Conversation, pk=conversation_id)
    flagged = request.POST.get("flagged") == "1"
    review.do_flag(
        Conversation.objects.filter(pk=conversation.pk),
        request.user,  # type: ignore[arg-type]
        flagged,
        via="web",
        request=request,
    )
    flash.success(request, "Flagged for attention." if flagged else "Flag removed.")
    return redirect("review:transcript", conversation_id=conversation.pk)


@login_required
@require_POST
def add_note(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    _reviewer(request)
    conversation = get_object_or_404(Conversation, pk=conversation_id)
    try:
        review.do_add_note(
            conversation,
            request.user,  # type: ignore[arg-type]
            request.POST.get("text", ""),
            via="web",
            request=request,
        )
    except ActionError as exc:
        flash.error(request, exc.message)
    else:
        flash.success(request, "Note saved.")
    return redirect("review:transcript", conversation_id=conversation.pk)


# ---- usage overview ----------------------------------------------------------------


@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    """Per user and day: turns, executions, errors, timeouts, sandbox seconds,
    top error types. Staff only; counts and exception names, no content."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not (user.is_active and user.is_staff):
        raise PermissionDenied("The usage overview is for staff.")
    try:
        days = max(1, min(366, int(request.GET.get("days", "7"))))
    except ValueError:
        days = 7
    user_id: int | None
    try:
        user_id = int(request.GET["user"]) if request.GET.get("user") else None
    except ValueError:
        raise Http404("No such user") from None
    end = timezone.localdate()
    start = end - timedelta(days=days - 1)
    rows = review.usage(start, end, user_id)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="usage-{start}-{end}.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "day",
                "user",
                "turns",
                "failed_turns",
                "executions",
                "errors",
                "timeouts",
                "sandbox_seconds",
                "top_errors",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r.day.isoformat(),
                    r.username,
                    r.turns,
                    r.failed_turns,
                    r.executions,
                    r.errors,
                    r.timeouts,
                    f"{r.sandbox_seconds:.1f}",
                    "; ".join(f"{name} ({n})" for name, n in r.top_errors),
                ]
            )
        return response
    totals = {
        "turns": sum(r.turns for r in rows),
        "failed_turns": sum(r.failed_turns for r in rows),
        "executions": sum(r.executions for r in rows),
        "errors": sum(r.errors for r in rows),
        "timeouts": sum(r.timeouts for r in rows),
        "sandbox_seconds": sum(r.sandbox_seconds for r in rows),
        "users": len({r.user_id for r in rows}),
    }
    users = (
        Conversation.objects.values("owner_id", "owner__username")
        .annotate(n=Count("id"))
        .order_by("owner__username")
    )
    context = {
        "rows": rows,
        "totals": totals,
        "top_errors": review.top_error_types(rows),
        "days": days,
        "start": start,
        "end": end,
        "user_id": user_id,
        "users": users,
        "day_choices": [1, 7, 30, 90],
        "can_review": review.can_review(user),
    }
    return render(request, "review/usage.html", context)


# ---- exports ---------------------------------------------------------------------------

EXPORT_ACTIONS = {
    "json": AuditRecord.Action.EXPORT_JSON,
    "ipynb": AuditRecord.Action.EXPORT_IPYNB,
    "jsonl": AuditRecord.Action.EXPORT_JSONL,
}


def export_response(
    request: HttpRequest, conversations: QuerySet[Conversation], fmt: str, via: str
) -> HttpResponse:
    """Conversations as a download: JSON (one document), .ipynb (a zip of
    notebooks, or one notebook for one conversation) or training JSONL.
    Checks the export permission and records who exported what."""
    _require(request, review.can_export(request.user))
    if fmt not in EXPORT_ACTIONS:
        raise Http404("Unknown export format")
    rows = list(conversations.select_related("owner", "flagged_by").order_by("created_at"))
    review.record(
        request.user,
        EXPORT_ACTIONS[fmt],
        rows,
        via=via,
        detail={"format": fmt},
        request=request,
    )
    stamp = timezone.now()
    name = f"conversations-{stamp:%Y%m%d-%H%M%S}"
    if fmt == "json":
        body = "".join(exports.json_chunks(rows, stamp.isoformat()))
        return attachment(body, "application/json", f"{name}.json")
    if fmt == "jsonl":
        return attachment(
            "".join(exports.jsonl_lines(rows)), "application/x-ndjson", f"{name}.jsonl"
        )
    if len(rows) == 1:
        return attachment(
            exports.notebook_json(rows[0]),
            "application/x-ipynb+json",
            f"{exports.export_stem(rows[0])}.ipynb",
        )
    return attachment(exports.notebooks_zip(rows), "application/zip", f"{name}.zip")


@login_required
@require_GET
def export_one(request: HttpRequest, conversation_id: UUID, fmt: str) -> HttpResponse:
    _require(request, review.can_export(request.user))
    conversations = Conversation.objects.filter(pk=conversation_id)
    if not conversations.exists():
        raise Http404("No such conversation")
    return export_response(request, conversations, fmt, via="web")
