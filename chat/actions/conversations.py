"""Conversations: the one ownership check, and create, rename, model, delete."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from chat.actions import quotas
from chat.actions.errors import ActionError
from chat.actions.messages import do_request_stop
from chat.broadcast import publish_on_commit
from chat.models import Conversation, SandboxRecord
from chat.serialize import conversation_event
from codeact_web.celery import app as celery_app

# The task that removes a deleted conversation's sandbox (chat.tasks registers it).
RELEASE_SANDBOXES = "chat.tasks.release_sandboxes"


def access_conversation(
    user: AbstractBaseUser | AnonymousUser, conversation_id: Any
) -> Conversation:
    """The one ownership check for every read and write of a conversation.

    Raises Http404 when the conversation does not exist or belongs to someone
    else, so the two cases cannot be told apart.
    """
    if not user.is_authenticated:
        raise Http404("No such conversation")
    try:
        return Conversation.objects.visible().get(id=conversation_id, owner_id=user.pk)
    except (Conversation.DoesNotExist, ValueError, ValidationError):
        raise Http404("No such conversation") from None


def available_models() -> list[dict[str, Any]]:
    """The model endpoints a user can choose from (keys and labels only)."""
    return [{"key": m["key"], "label": m["label"]} for m in settings.CODEACT_MODELS]


def model_config(key: str) -> dict[str, Any]:
    """The configuration of a model endpoint; the first one for an unknown key."""
    for model in settings.CODEACT_MODELS:
        if model["key"] == key:
            return dict(model)
    return dict(settings.CODEACT_MODELS[0])


def _model_keys() -> set[str]:
    return {str(m["key"]) for m in settings.CODEACT_MODELS}


def do_create_conversation(
    owner: User, model: str | None = None, *, headless: bool = False
) -> Conversation:
    """A new, empty conversation answered by `model` (or the first model), with web
    access as CODEACT_EGRESS_DEFAULT says. `headless`: for the operator's command
    (chat.worker.headless), which the conversation quota does not limit."""
    chosen = model if model in _model_keys() else str(settings.CODEACT_MODELS[0]["key"])
    if not headless:
        quotas.check_new_conversation(owner.pk)
    return Conversation.objects.create(
        owner=owner, model=chosen, web_access=settings.CODEACT_EGRESS_DEFAULT
    )


def web_access_offered() -> bool:
    """Whether this deployment gives sandboxes web access at all (CODEACT_EGRESS=proxy)."""
    return bool(settings.CODEACT_EGRESS == "proxy")


def do_set_web_access(conversation: Conversation, on: bool) -> Conversation:
    """Switch web access for the conversation's sandbox. A running sandbox keeps its
    network: the next execution after the switch starts a new one (variables are
    lost, files restored)."""
    if not web_access_offered():
        raise ActionError(
            "web_access_unavailable", "This server does not offer web access to code."
        )
    if conversation.web_access == on:
        return conversation
    return _update_conversation(conversation, web_access=on)


def do_rename_conversation(conversation: Conversation, title: str) -> Conversation:
    """Give the conversation a title (white space folded, at most 200 characters)."""
    title = " ".join(title.split())[:200]
    if not title:
        raise ActionError("invalid_title", "A title cannot be empty.")
    return _update_conversation(conversation, title=title)


def do_set_model(conversation: Conversation, key: str) -> Conversation:
    """Choose the model that answers this conversation's next messages."""
    if key not in _model_keys():
        raise ActionError("unknown_model", f"There is no model called '{key[:100]}'.")
    return _update_conversation(conversation, model=key)


def _update_conversation(conversation: Conversation, **fields: str | bool) -> Conversation:
    with transaction.atomic():
        conversation.seq = conversation.next_seq()
        for name, value in fields.items():
            setattr(conversation, name, value)
        conversation.save(update_fields=[*fields, "seq", "updated_at"])
        publish_on_commit(conversation.id, conversation_event(conversation))
    return conversation


def do_delete_conversation(conversation: Conversation) -> None:
    """The owner's delete. Open pages are told, and the conversation's sandbox is
    removed at once (not when it would have idled out), so it stops counting
    against the caps.

    CODEACT_RETENTION=delete removes it and everything in it now;
    keep-for-review hides it from the owner (`deleted_at`) and stops its turn,
    and reviewers keep it, with notes and flags, until the purge after
    CODEACT_RETENTION_DAYS.
    """
    conversation_id = conversation.id
    with transaction.atomic():
        sandboxes = list(
            SandboxRecord.objects.filter(
                conversation_id=conversation_id, state=SandboxRecord.State.CLAIMED
            ).values_list("pk", flat=True)
        )
        if settings.CODEACT_RETENTION == "keep-for-review":
            do_request_stop(conversation)
            conversation.deleted_at = timezone.now()
            conversation.save(update_fields=["deleted_at"])
        else:
            conversation.delete()
        publish_on_commit(conversation_id, {"type": "deleted"})
        if sandboxes:
            transaction.on_commit(lambda: release_sandboxes(sandboxes))


def release_sandboxes(record_ids: list[int]) -> None:
    """Have a worker remove these sandbox records' containers (by task name: the
    web side never loads Docker)."""
    celery_app.send_task(RELEASE_SANDBOXES, args=[record_ids])


def do_purge_deleted_conversations() -> int:
    """Remove conversations deleted by their owners more than CODEACT_RETENTION_DAYS
    ago (keep-for-review), with their notes and flags. Returns how many."""
    cutoff = timezone.now() - timedelta(days=settings.CODEACT_RETENTION_DAYS)
    expired = Conversation.objects.filter(deleted_at__lt=cutoff)
    count = 0
    # One at a time (and at most 500 a run): each is one transaction of bounded size.
    for conversation_id in list(expired.values_list("id", flat=True)[:500]):
        deleted, _ = Conversation.objects.filter(id=conversation_id).delete()
        count += 1 if deleted else 0
    return count
