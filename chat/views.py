"""Pages. Every conversation read or write goes through access_conversation."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chat import actions
from chat.models import Conversation
from chat.serialize import conversation_data, events_after


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
