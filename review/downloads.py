"""Conversations handed to a reviewer as files: one helper for the transcript's
links and the admin's export actions. Each checks the export permission and
records who took what."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone

from chat import downloads, exports
from chat.models import AuditRecord, Conversation, WorkspaceFile
from review import datasets
from review.audit import record
from review.permissions import can_export, require

EXPORT_ACTIONS = {
    "json": AuditRecord.Action.EXPORT_JSON,
    "ipynb": AuditRecord.Action.EXPORT_IPYNB,
    "jsonl": AuditRecord.Action.EXPORT_JSONL,
}


def export_response(
    request: HttpRequest, conversations: QuerySet[Conversation], fmt: str, via: str
) -> HttpResponse:
    """Conversations as a download: JSON (one document), .ipynb (a zip of
    notebooks, or one notebook for one conversation) or training JSONL."""
    require(can_export(request.user))
    if fmt not in EXPORT_ACTIONS:
        raise Http404("Unknown export format")
    rows = list(conversations.select_related("owner", "flagged_by").order_by("created_at"))
    record(
        request.user, EXPORT_ACTIONS[fmt], rows, via=via, detail={"format": fmt}, request=request
    )
    stamp = timezone.now()
    name = f"conversations-{stamp:%Y%m%d-%H%M%S}"
    if fmt == "json":
        body = "".join(datasets.json_chunks(rows, stamp.isoformat()))
        return downloads.attachment(body, "application/json", f"{name}.json")
    if fmt == "jsonl":
        body = "".join(datasets.jsonl_lines(rows))
        return downloads.attachment(body, "application/x-ndjson", f"{name}.jsonl")
    if len(rows) == 1:
        return downloads.notebook(rows[0])
    return downloads.attachment(exports.notebooks_zip(rows), "application/zip", f"{name}.zip")


def workspace_file(request: HttpRequest, file: WorkspaceFile) -> HttpResponseBase:
    """A conversation's workspace file as its owner would get it. Taking a user's
    data away is an export: it needs the export permission and leaves an audit
    record naming the file and its hash."""
    require(can_export(request.user))
    record(
        request.user,
        AuditRecord.Action.DOWNLOAD_FILE,
        [file.conversation_id],
        via="web",
        detail={"file": file.path, "size": file.size, "sha256": file.sha256},
        request=request,
    )
    response = downloads.workspace_file(file)
    response["Cache-Control"] = "private, no-store"
    return response
