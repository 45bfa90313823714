"""Account pages: the sign-up policy and a lockout's wait, as templates need them."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def signup_policy() -> str:
    """open, invite or closed (CODEACT_SIGNUP): the login page links to sign-up unless closed."""
    return str(settings.CODEACT_SIGNUP)


@register.filter
def wait_words(value: object) -> str:
    """A timedelta as people say it: "15 minutes", "1 hour 30 minutes"."""
    if not isinstance(value, timedelta):
        return ""
    minutes = max(1, round(value.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)
