"""`{{ n|human_size }}`: byte counts in templates as everywhere else (one formatter)."""

from __future__ import annotations

from django import template

from chat.agent.text import human_size as _human_size

register = template.Library()


@register.filter
def human_size(value: object) -> str:
    try:
        return _human_size(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return ""
