"""Helpers for the actions written as one SQL statement (the hot path of a turn)."""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import connection, transaction


def one_statement() -> Any:
    """For a write done in one SQL statement: outside a transaction the statement
    commits on its own (one round trip, where an atomic block adds a BEGIN and a
    COMMIT); inside the caller's transaction it gets a savepoint, so a failure
    leaves that transaction usable."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def columns(model: type[Any], table: str) -> str:
    """A model's concrete columns, qualified by `table`, in field order."""
    return ", ".join(f"{table}.{f.column}" for f in model._meta.concrete_fields)


def field_names(model: type[Any]) -> list[str]:
    """The attribute names of `columns`, in the same order (for `Model.from_db`)."""
    return [f.attname for f in model._meta.concrete_fields]
