"""A websocket lives only as long as its login session.

A socket is authenticated once, at connect time. Two things end it when the
session ends, in whichever web process holds it:

- every frame re-reads the session and the user (`current_user`: two primary
  key lookups in the database trip the frame makes anyway), so a session ended
  by any means (a bulk update, `clearsessions`, an edit in the database) stops
  the next frame;
- logout, a password change and deactivation publish to the groups the
  socket joined (its session's and its user's), over the channel layer's Redis,
  so the socket closes at once even when its page sends nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
from importlib import import_module
from types import SimpleNamespace
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user, user_logged_out
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models.signals import post_save

from chat import live
from chat.broadcast import group_channel

ENDED = "session.ended"  # ConversationConsumer.session_ended: close at once
CHECK = "session.check"  # ConversationConsumer.session_check: re-read the session, close if over


def session_group(session_key: str) -> str:
    # A digest, not the key: group names travel as Redis channel names.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:32]


def user_group(user_id: Any) -> str:
    return f"user.{user_id}"


def session_key_of(scope: dict[str, Any]) -> str | None:
    session = scope.get("session")
    return getattr(session, "session_key", None) if session is not None else None


def current_user(scope: dict[str, Any]) -> Any:
    """The user the socket's session belongs to now, or AnonymousUser when the
    session was logged out, its password changed or its user deactivated.

    Django's own check for a request: the session must still exist, its user be
    active, and the password hash it was made with still be the user's."""
    key = session_key_of(scope)
    if not key:
        return AnonymousUser()
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    return get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]


def _notify(group: str, kind: str) -> None:
    """Publish one message to a group, as `group_send` would, from sync code."""
    payload = get_channel_layer().serialize({"type": kind})
    # Redis down: the socket's next frame finds the session ended all the same.
    with contextlib.suppress(redis.RedisError):
        live.redis_client().publish(group_channel(group), payload)


def _on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        # Sent before Django flushes the session: the socket closes without a check.
        _notify(session_group(key), ENDED)


def _on_user_saved(sender: Any, instance: User, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login, every time: nothing a socket must re-check
    group = user_group(instance.pk)
    transaction.on_commit(lambda: _notify(group, CHECK))


def connect_signals() -> None:
    user_logged_out.connect(_on_logout, dispatch_uid="chat.socket_sessions.logout")
    post_save.connect(_on_user_saved, sender=User, dispatch_uid="chat.socket_sessions.user")
