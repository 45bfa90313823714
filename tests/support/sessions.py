"""A signed-in user with a conversation, made directly in the database: what a
browser holds after sign-up and "New conversation", for load and chaos runs."""

from __future__ import annotations


def signed_in_user(username: str) -> tuple[str, str]:
    """(the session cookie, a new conversation's id) of a new user."""
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from chat.models import Conversation

    user = get_user_model().objects.create_user(username, password=None)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    conversation = Conversation.objects.create(owner=user, model="default")
    return f"sessionid={session.session_key}", str(conversation.id)
