"""Who may read and export other people's conversations.

Reading another user's conversation (a transcript, a log row in the admin, a
search over message text) and exporting logs each need a dedicated
permission; staff status alone shows no content. Both are in the Reviewers
group, made after every migrate.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission, User
from django.core.exceptions import PermissionDenied

REVIEW = "chat.review_conversation"
EXPORT = "chat.export_conversation"
REVIEWERS_GROUP = "Reviewers"

AnyUser = AbstractBaseUser | AnonymousUser  # what request.user is


def _has(user: AnyUser, perm: str) -> bool:
    return bool(
        isinstance(user, User) and user.is_authenticated and user.is_active and user.has_perm(perm)
    )


def can_review(user: AnyUser) -> bool:
    return _has(user, REVIEW)


def can_export(user: AnyUser) -> bool:
    return _has(user, EXPORT)


def require(allowed: bool) -> None:
    """Refuse the request (403) unless `allowed`."""
    if not allowed:
        raise PermissionDenied("You do not have permission to review conversations.")


def ensure_reviewers_group(**_: Any) -> None:
    """The Reviewers group holds both permissions; run after every migrate."""
    perms = Permission.objects.filter(
        content_type__app_label="chat",
        codename__in=["review_conversation", "export_conversation"],
    )
    if perms.count() < 2:  # permissions are created by the same post_migrate signal
        return
    group, _created = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    group.permissions.add(*perms)
