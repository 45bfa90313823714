"""The words people read for roles and cell states: one table for the page (sent in
its initial JSON), the reviewer's transcript and the exports."""

from __future__ import annotations

from typing import Any

from chat.models import Execution

ROLE_NAMES = {"user": "You", "assistant": "Assistant", "notice": "Notice"}


def role_name(role: str) -> str:
    return ROLE_NAMES.get(role, role)


def cell_status(status: str) -> str:
    """A cell's state in words (`ok` is "Done"); the label of Execution.Status."""
    labels: dict[str, str] = dict(Execution.Status.choices)
    return labels.get(status, status)


def for_page() -> dict[str, Any]:
    return {"roles": ROLE_NAMES, "cell_status": dict(Execution.Status.choices)}
