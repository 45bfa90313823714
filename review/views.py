"""Reviewer pages: a conversation's transcript with its audit trail, flags and
notes, and the staff usage overview. Content needs the review permission and
every transcript view leaves an audit record."""

from __future__ import annotations

import csv
from datetime import timedelta
from uuid import UUID

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chat import downloads as chat_downloads
from chat.actions.errors import ActionError
from chat.models import AuditRecord, Conversation, Output, WorkspaceFile
from review import actions, downloads, queries, transcript
from review.audit import record
from review.permissions import can_export, can_review, require


@login_required
@require_GET
def transcript_page(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    require(can_review(request.user))
    conversation = get_object_or_404(
        Conversation.objects.select_related("owner", "flagged_by"), pk=conversation_id
    )
    record(request.user, AuditRecord.Action.TRANSCRIPT, [conversation], via="web", request=request)
    turns = transcript.transcript_turns(conversation)
    context = {
        "conversation": conversation,
        "turns": turns,
        "files": conversation.files.defer("content").order_by("path"),
        "notes": conversation.review_notes.select_related("author"),
        "summary": transcript.summary(turns),
        "can_export": can_export(request.user),
        "note_max": actions.NOTE_MAX,
    }
    response = render(request, "review/transcript.html", context)
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def transcript_image(request: HttpRequest, conversation_id: UUID, output_id: int) -> HttpResponse:
    """A plot on the transcript page (covered by the transcript view's audit record)."""
    require(can_review(request.user))
    output = get_object_or_404(
        Output, pk=output_id, conversation_id=conversation_id, image__isnull=False
    )
    response = chat_downloads.output_image(output)
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def download_file(request: HttpRequest, conversation_id: UUID, file_id: int) -> HttpResponseBase:
    """A workspace file; needs the export permission and is audited."""
    require(can_export(request.user))
    file = get_object_or_404(
        WorkspaceFile.objects.defer("content"), pk=file_id, conversation_id=conversation_id
    )
    return downloads.workspace_file(request, file)


@login_required
@require_GET
def export_one(request: HttpRequest, conversation_id: UUID, fmt: str) -> HttpResponse:
    require(can_export(request.user))
    conversations = Conversation.objects.filter(pk=conversation_id)
    if not conversations.exists():
        raise Http404("No such conversation")
    return downloads.export_response(request, conversations, fmt, via="web")


@login_required
@require_POST
def flag(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    require(can_review(request.user))
    conversation = get_object_or_404(Conversation, pk=conversation_id)
    flagged = request.POST.get("flagged") == "1"
    actions.do_flag(
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
    require(can_review(request.user))
    conversation = get_object_or_404(Conversation, pk=conversation_id)
    try:
        actions.do_add_note(
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

USAGE_COLUMNS = [
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


def _usage_csv(rows: list[queries.UsageRow], name: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow(USAGE_COLUMNS)
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


def _usage_totals(rows: list[queries.UsageRow]) -> dict[str, float]:
    return {
        "turns": sum(r.turns for r in rows),
        "failed_turns": sum(r.failed_turns for r in rows),
        "executions": sum(r.executions for r in rows),
        "errors": sum(r.errors for r in rows),
        "timeouts": sum(r.timeouts for r in rows),
        "sandbox_seconds": sum(r.sandbox_seconds for r in rows),
        "users": len({r.user_id for r in rows}),
    }


def _usage_query(request: HttpRequest) -> tuple[int, int | None]:
    """The number of days and the user a usage request asks for."""
    try:
        days = max(1, min(366, int(request.GET.get("days", "7"))))
    except ValueError:
        days = 7
    try:
        user_id = int(request.GET["user"]) if request.GET.get("user") else None
    except ValueError:
        raise Http404("No such user") from None
    return days, user_id


@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    """Per user and day: turns, executions, errors, timeouts, sandbox seconds,
    top error types. Staff only; counts and exception names, no content."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not (user.is_active and user.is_staff):
        raise PermissionDenied("The usage overview is for staff.")
    days, user_id = _usage_query(request)
    end = timezone.localdate()
    start = end - timedelta(days=days - 1)
    rows = queries.usage(start, end, user_id)
    if request.GET.get("format") == "csv":
        return _usage_csv(rows, f"usage-{start}-{end}.csv")
    users = (
        Conversation.objects.values("owner_id", "owner__username")
        .annotate(n=Count("id"))
        .order_by("owner__username")
    )
    context = {
        "rows": rows,
        "totals": _usage_totals(rows),
        "top_errors": queries.top_error_types(rows),
        "days": days,
        "start": start,
        "end": end,
        "user_id": user_id,
        "users": users,
        "day_choices": [1, 7, 30, 90],
        "can_review": can_review(user),
        "quotas": queries.quota_rows(rows, user_id),
    }
    return render(request, "review/usage.html", context)
