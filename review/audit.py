"""The audit trail: who read or exported which conversations, when and from where.

Every look at another user's content (a transcript, an admin row, a search)
and every export or download writes one `AuditRecord`; nobody can change or
delete them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest

from chat.models import AuditRecord
from codeact_web.proxy import client_ip
from review.permissions import AnyUser


def _client_ip(request: HttpRequest | None) -> str | None:
    # Behind a reverse proxy, the client's address (CODEACT_TRUSTED_PROXIES).
    return client_ip(request) if request is not None else None


def record(
    actor: AnyUser | str,
    action: str,
    conversations: Iterable[Any] = (),
    *,
    via: str,
    detail: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> AuditRecord:
    """Write one audit record. `actor` is a user, or a name for command-line runs."""
    ids = [str(getattr(c, "pk", c)) for c in conversations]
    user = actor if isinstance(actor, User) else None
    name = actor if isinstance(actor, str) else actor.get_username()
    return AuditRecord.objects.create(
        user=user,
        actor=name,
        action=action,
        conversations=ids,
        count=len(ids),
        detail=detail or {},
        via=via,
        ip=_client_ip(request),
    )
