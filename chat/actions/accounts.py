"""Sign-up under CODEACT_SIGNUP: open to anyone, by invite link only, or closed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat.actions.errors import ActionError
from chat.models import Invite

SIGNUP_CLOSED = "Sign-up is closed on this site. Ask its administrator for an account."
INVITE_NEEDED = (
    "Sign-up on this site is by invitation. Open the invite link you were given; "
    "ask the administrator for one if you have none."
)
INVITE_INVALID = (
    "This invite link is not valid: it was already used, revoked or has expired. "
    "Ask the administrator for a new one."
)


def check_signup(token: str) -> Invite | None:
    """May someone sign up with this invite token (empty: none)? Returns the invite
    that admits them (None when sign-up is open), or raises ActionError saying why not."""
    policy = settings.CODEACT_SIGNUP
    if policy == "open":
        return None
    if policy == "closed":
        raise ActionError("signup_closed", SIGNUP_CLOSED)
    if not token:
        raise ActionError("invite_needed", INVITE_NEEDED)
    invite = Invite.objects.filter(token=token[:64]).first()
    if invite is None or not invite.usable():
        raise ActionError("invite_invalid", INVITE_INVALID)
    return invite


def do_sign_up(form: Any, token: str) -> User:
    """Create the account from a valid sign-up form; an invite is used up with it,
    under a row lock so one link makes one account."""
    with transaction.atomic():
        invite = check_signup(token)
        if invite is not None:
            invite = Invite.objects.select_for_update().get(pk=invite.pk)
            if not invite.usable():
                raise ActionError("invite_invalid", INVITE_INVALID)
        user: User = form.save()
        if invite is not None:
            invite.used_at, invite.used_by = timezone.now(), user
            invite.save(update_fields=["used_at", "used_by"])
    return user
