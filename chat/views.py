"""Pages. Every conversation read or write goes through access_conversation."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from chat import actions, exports, files, review
from chat.models import Conversation, Output, WorkspaceFile
from chat.serialize import conversation_data, events_after, file_data
from sandbox.api import MiB


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat:home")
    form: UserCreationForm[Any] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:home")
    return render(request, "registration/signup.html", {"form": form})


def _sidebar(request: HttpRequest, current: Conversation | None = None) -> dict[str, Any]:
    return {
        "conversations": Conversation.objects.filter(owner_id=request.user.pk).only(
            "id", "title", "updated_at"
        )[:200],
        "current": current,
        "models": actions.available_models(),
    }


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/home.html", _sidebar(request))


@login_required
@require_POST
def new_conversation(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)  # login_required
    conversation = actions.do_create_conversation(request.user, request.POST.get("model"))
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
def conversation_page(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = actions.access_conversation(request.user, conversation_id)
    initial = {
        "conversation": conversation_data(conversation),
        "last_seq": conversation.last_seq,
        "events": events_after(conversation, 0),
        "upload_max_bytes": settings.CODEACT_UPLOAD_MAX_MB * MiB,
        "uploads_per_request": settings.CODEACT_UPLOADS_PER_REQUEST,
        "feedback": review.feedback_by_message(conversation, request.user),  # type: ignore[arg-type]
    }
    context = _sidebar(request, conversation) | {"conversation": conversation, "initial": initial}
    return render(request, "chat/conversation.html", context)


@login_required
@require_POST
def rename_conversation(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = actions.access_conversation(request.user, conversation_id)
    try:
        actions.do_rename_conversation(conversation, request.POST.get("title", ""))
    except actions.ActionError as exc:
        flash.error(request, exc.message)
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
@require_POST
def delete_conversation(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = actions.access_conversation(request.user, conversation_id)
    actions.do_delete_conversation(conversation)
    flash.success(request, f"Deleted “{conversation.title}”.")
    return redirect("chat:home")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@login_required
@require_POST
def upload_files(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    """Store uploaded files (multipart field `file`, one or more) in the conversation.

    The size is checked from Content-Length before the body is read, and again
    per file. Answers JSON: the stored files, or an error with a code.
    """
    conversation = actions.access_conversation(request.user, conversation_id)
    limit = settings.CODEACT_UPLOAD_MAX_MB * MiB
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > limit * settings.CODEACT_UPLOADS_PER_REQUEST + MiB:
        return _error(
            413,
            "file_too_large",
            f"The upload is too large; each file may be up to {settings.CODEACT_UPLOAD_MAX_MB} MB.",
        )
    uploads = request.FILES.getlist("file")
    if not uploads:
        return _error(400, "no_file", "Choose a file to upload.")
    if len(uploads) > settings.CODEACT_UPLOADS_PER_REQUEST:
        return _error(
            400,
            "too_many_files",
            f"Upload at most {settings.CODEACT_UPLOADS_PER_REQUEST} files at a time.",
        )
    stored = []
    try:
        for upload in uploads:
            files.check_upload_size(upload.size or 0)
            data = upload.read()
            stored.append(
                files.do_upload_file(conversation, request.user, upload.name or "upload", data)
            )
    except actions.ActionError as exc:
        status = 413 if exc.code == "file_too_large" else 400
        body = {"error": {"code": exc.code, "message": exc.message}}
        body["files"] = [file_data(f) for f in stored]  # type: ignore[assignment]
        return JsonResponse(body, status=status)
    return JsonResponse({"files": [file_data(f) for f in stored]}, status=201)


@login_required
@require_POST
def rate_message(request: HttpRequest, conversation_id: UUID, message_id: int) -> HttpResponse:
    """Rate an answer: JSON {"rating": 1 | -1 | null, "comment": "..."}."""
    conversation = actions.access_conversation(request.user, conversation_id)
    if len(request.body) > 16 * 1024:
        return _error(413, "too_large", "The feedback is too long.")
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "malformed", "The feedback could not be read.")
    if not isinstance(body, dict):
        return _error(400, "malformed", "The feedback could not be read.")
    try:
        feedback = review.do_rate(
            conversation,
            request.user,  # type: ignore[arg-type]
            message_id,
            body.get("rating"),
            body.get("comment", ""),
        )
    except actions.ActionError as exc:
        status = 404 if exc.code == "no_message" else 400
        return _error(status, exc.code, exc.message)
    if feedback is None:
        return JsonResponse({"feedback": None})
    return JsonResponse({"feedback": {"rating": feedback.rating, "comment": feedback.comment}})


def attachment(content: bytes | str, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, name) or "attachment"
    return no_sniff(response)


def no_sniff(response: HttpResponse) -> HttpResponse:
    response["X-Content-Type-Options"] = "nosniff"
    # If opened directly, an SVG (or anything) must not run script or load anything.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_GET
def download_file(request: HttpRequest, conversation_id: UUID, file_id: int) -> HttpResponse:
    conversation = actions.access_conversation(request.user, conversation_id)
    file = get_object_or_404(WorkspaceFile, pk=file_id, conversation=conversation)
    return attachment(bytes(file.content), "application/octet-stream", file.path.rsplit("/", 1)[-1])


@login_required
@require_GET
def output_image(request: HttpRequest, conversation_id: UUID, output_id: int) -> HttpResponse:
    conversation = actions.access_conversation(request.user, conversation_id)
    output = get_object_or_404(Output, pk=output_id, conversation=conversation, image__isnull=False)
    return no_sniff(HttpResponse(bytes(output.image or b""), content_type=output.image_mime))


@login_required
@require_GET
def export_notebook(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = actions.access_conversation(request.user, conversation_id)
    return attachment(
        exports.notebook_json(conversation),
        "application/x-ipynb+json",
        f"{exports.export_stem(conversation)}.ipynb",
    )


@login_required
@require_GET
def export_markdown(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = actions.access_conversation(request.user, conversation_id)
    return attachment(
        exports.markdown(conversation),
        "text/markdown; charset=utf-8",
        f"{exports.export_stem(conversation)}.md",
    )
