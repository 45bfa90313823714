"""The words people read for roles and cell states: one table for the page (sent in
its initial JSON), the reviewer's transcript and the exports."""

from __future__ import annotations

from typing import Any

from chat.models import Execution

ROLE_NAMES = {"user": "You", "assistant": "Assistant", "notice": "Notice"}
CELL_STATUS: dict[str, str] = dict(Execution.Status.choices)  # `ok` is "Done"


def role_name(role: str) -> str:
    return ROLE_NAMES.get(role, role)


def cell_status(status: str) -> str:
    """A cell's state in words: the label of Execution.Status."""
    return CELL_STATUS.get(status, status)


def for_page() -> dict[str, Any]:
    return {"roles": ROLE_NAMES, "cell_status": CELL_STATUS}
