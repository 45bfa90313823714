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
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from chat import downloads, labels
from chat.actions import accounts, files, quotas
from chat.actions.conversations import (
    access_conversation,
    available_models,
    do_create_conversation,
    do_delete_conversation,
    do_rename_conversation,
    web_access_offered,
)
from chat.actions.errors import ActionError
from chat.actions.feedback import do_rate, feedback_by_message
from chat.agent.text import human_size
from chat.models import Conversation, Output, WorkspaceFile
from chat.serialize import conversation_data, events_after, file_data


def signup(request: HttpRequest) -> HttpResponse:
    """Sign-up under CODEACT_SIGNUP; an invite link carries its token as ?invite=."""
    if request.user.is_authenticated:
        return redirect("chat:home")
    token = request.POST.get("invite") or request.GET.get("invite") or ""
    try:
        accounts.check_signup(token)
    except ActionError as exc:
        return render(
            request, "registration/signup_closed.html", {"reason": exc.message}, status=403
        )
    form: UserCreationForm[Any] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = accounts.do_sign_up(form, token)
        except ActionError as exc:
            return render(
                request, "registration/signup_closed.html", {"reason": exc.message}, status=403
            )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:home")
    return render(request, "registration/signup.html", {"form": form, "invite": token})


def _sidebar(request: HttpRequest, current: Conversation | None = None) -> dict[str, Any]:
    return {
        "conversations": Conversation.objects.visible()
        .filter(owner_id=request.user.pk)
        .only("id", "title", "updated_at")[:200],
        "current": current,
        "models": available_models(),
    }


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/home.html", _sidebar(request))


@login_required
@require_POST
def new_conversation(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)  # login_required
    try:
        conversation = do_create_conversation(request.user, request.POST.get("model"))
    except ActionError as exc:
        flash.error(request, exc.message)
        return redirect("chat:home")
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
def conversation_page(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    initial = {
        "conversation": conversation_data(conversation),
        "last_seq": conversation.last_seq,
        "events": events_after(conversation, 0),
        "upload_max_bytes": files.upload_max_bytes(),
        "upload_max_label": human_size(files.upload_max_bytes()),
        "uploads_per_request": settings.CODEACT_UPLOADS_PER_REQUEST,
        "feedback": feedback_by_message(conversation, request.user),  # type: ignore[arg-type]
        "labels": labels.for_page(),
    }
    context = _sidebar(request, conversation) | {
        "conversation": conversation,
        "initial": initial,
        "web_access_offered": web_access_offered(),
    }
    return render(request, "chat/conversation.html", context)


@login_required
@require_POST
def rename_conversation(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    try:
        do_rename_conversation(conversation, request.POST.get("title", ""))
    except ActionError as exc:
        flash.error(request, exc.message)
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
@require_POST
def delete_conversation(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    do_delete_conversation(conversation)
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
    conversation = access_conversation(request.user, conversation_id)
    limit = files.upload_max_bytes()
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > limit * settings.CODEACT_UPLOADS_PER_REQUEST + files.MiB:
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
        quotas.check_stored_bytes(conversation.owner_id, sum(u.size or 0 for u in uploads))
        for upload in uploads:
            files.check_upload_size(upload.size or 0)
            data = upload.read()
            stored.append(
                files.do_upload_file(conversation, request.user, upload.name or "upload", data)
            )
    except ActionError as exc:
        status = 413 if exc.code == "file_too_large" else 400
        body = {"error": {"code": exc.code, "message": exc.message}}
        body["files"] = [file_data(f) for f in stored]  # type: ignore[assignment]
        return JsonResponse(body, status=status)
    return JsonResponse({"files": [file_data(f) for f in stored]}, status=201)


@login_required
@require_POST
def rate_message(request: HttpRequest, conversation_id: UUID, message_id: int) -> HttpResponse:
    """Rate an answer: JSON {"rating": 1 | -1 | null, "comment": "..."}."""
    conversation = access_conversation(request.user, conversation_id)
    if len(request.body) > 16 * 1024:
        return _error(413, "too_large", "The feedback is too long.")
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "malformed", "The feedback could not be read.")
    if not isinstance(body, dict):
        return _error(400, "malformed", "The feedback could not be read.")
    try:
        feedback = do_rate(
            conversation,
            request.user,  # type: ignore[arg-type]
            message_id,
            body.get("rating"),
            body.get("comment", ""),
        )
    except ActionError as exc:
        status = 404 if exc.code == "no_message" else 400
        return _error(status, exc.code, exc.message)
    if feedback is None:
        return JsonResponse({"feedback": None})
    return JsonResponse({"feedback": {"rating": feedback.rating, "comment": feedback.comment}})


@login_required
@require_GET
def download_file(request: HttpRequest, conversation_id: UUID, file_id: int) -> HttpResponseBase:
    conversation = access_conversation(request.user, conversation_id)
    return downloads.workspace_file(
        get_object_or_404(
            WorkspaceFile.objects.defer("content"), pk=file_id, conversation=conversation
        )
    )


@login_required
@require_POST
def delete_file(request: HttpRequest, conversation_id: UUID, file_id: int) -> HttpResponse:
    """Delete one of the conversation's files; answers JSON (or an error with a code)."""
    conversation = access_conversation(request.user, conversation_id)
    try:
        files.do_delete_file(conversation, file_id)
    except ActionError as exc:
        return _error(404 if exc.code == "not_found" else 409, exc.code, exc.message)
    return JsonResponse({"deleted": file_id})


@login_required
@require_GET
def output_image(request: HttpRequest, conversation_id: UUID, output_id: int) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    return downloads.output_image(
        get_object_or_404(Output, pk=output_id, conversation=conversation, image__isnull=False)
    )


@login_required
@require_GET
def export_notebook(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    return downloads.notebook(access_conversation(request.user, conversation_id))


@login_required
@require_GET
def export_markdown(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    return downloads.markdown(access_conversation(request.user, conversation_id))
