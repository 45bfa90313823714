"""The admin's filters for conversation logs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from chat.models import Message, Turn
from review.queries import day_bounds, has_errors, rating_filter


class LastActivityFilter(admin.SimpleListFilter):
    title = "last activity"
    parameter_name = "active"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("today", "Today"),
            ("yesterday", "Yesterday"),
            ("7d", "Past 7 days"),
            ("30d", "Past 30 days"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        today = timezone.localdate()
        if self.value() == "today":
            start, end = day_bounds(today)
        elif self.value() == "yesterday":
            start, end = day_bounds(today - timedelta(days=1))
        elif self.value() in ("7d", "30d"):
            days = 7 if self.value() == "7d" else 30
            start, _ = day_bounds(today - timedelta(days=days - 1))
            end = None
        else:
            return queryset
        # Activity on a day means a turn asked that day, not just a rename.
        updated, asked = Q(updated_at__gte=start), Q(turns__created_at__gte=start)
        if end is not None:
            updated &= Q(updated_at__lt=end)
            asked &= Q(turns__created_at__lt=end)
        return queryset.filter(updated | asked).distinct()


class HasErrorsFilter(admin.SimpleListFilter):
    title = "errors"
    parameter_name = "errors"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "With errors"), ("no", "Without errors")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(has_errors())
        if self.value() == "no":
            return queryset.exclude(has_errors())
        return queryset


class DeletedByOwnerFilter(admin.SimpleListFilter):
    """Conversations their owner deleted, kept for review (CODEACT_RETENTION)."""

    title = "deleted by owner"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Deleted, kept for review"), ("no", "Not deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


class SupersededFilter(admin.SimpleListFilter):
    """Questions and answers the user replaced (an edit, or Regenerate): kept in the
    logs, never sent to the model again."""

    title = "superseded"
    parameter_name = "superseded"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Replaced by an edit or a new answer"), ("no", "Current")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(superseded_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(superseded_at__isnull=True)
        return queryset


class TurnStatusFilter(admin.SimpleListFilter):
    title = "turn status"
    parameter_name = "turn_status"
    LABELS = {
        Turn.Status.QUEUED: "Has a waiting turn",
        Turn.Status.RUNNING: "Has a running turn",
        Turn.Status.DONE: "Has an answered turn",
        Turn.Status.FAILED: "Has a failed turn",
        Turn.Status.INTERRUPTED: "Has an interrupted turn",
        Turn.Status.STOPPED: "Has a turn stopped by the user",
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status.value, label) for status, label in self.LABELS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in Turn.Status.values:
            return queryset.filter(turns__status=self.value()).distinct()
        return queryset


class RatingFilter(admin.SimpleListFilter):
    title = "rating"
    parameter_name = "rating"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("up", "Rated good (no bad)"),
            ("down", "Rated bad"),
            ("rated", "Any rating"),
            ("unrated", "Not rated"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("up", "down", "rated", "unrated"):
            return queryset.filter(rating_filter(str(self.value())))
        return queryset


# ---- which model wrote the replies ----------------------------------------------------

# The choice for replies from before the writer was recorded: a value no reply holds
# in practice (hosts and formats have no parentheses, model names are repo paths).
NOT_RECORDED_CHOICE = "(none)"
WRITER_FIELDS = ("model_name", "endpoint", "action_format")
_WRITERS_ATTR = "_codeact_reply_writers"


def _writer_values(request: HttpRequest) -> dict[str, list[str]]:
    """Each writer field's values present on assistant replies ("" among them when
    some reply predates it). One DISTINCT over the replies serves all the writer
    filters of a page (they share the request), not one scan per filter."""
    cached: dict[str, list[str]] | None = getattr(request, _WRITERS_ATTR, None)
    if cached is not None:
        return cached
    rows = (
        Message.objects.filter(role=Message.Role.ASSISTANT)
        .order_by()
        .values_list(*WRITER_FIELDS)
        .distinct()
    )
    found: dict[str, set[str]] = {name: set() for name in WRITER_FIELDS}
    for row in rows:
        for name, value in zip(WRITER_FIELDS, row, strict=True):
            found[name].add(value)
    values = {name: sorted(found[name]) for name in WRITER_FIELDS}
    setattr(request, _WRITERS_ATTR, values)
    return values


class WriterFilter(admin.SimpleListFilter):
    """Rows by what an assistant reply records of the model that wrote it: its model
    name, endpoint or action format (the conversation's model key alone cannot say
    which model answered: the configuration behind a key can change). The choices
    are the values present, and "Not recorded" for replies from before.

    Messages are filtered on the field itself; conversations and turns on having
    such a reply (EXISTS: no join, so no duplicate rows and no DISTINCT)."""

    field: ClassVar[str]
    # The lookup from a reply to the admin's row; "" when the rows are the replies.
    reply_to_row: ClassVar[str] = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        present = _writer_values(request)[self.field]
        choices = [(value, value) for value in present if value]
        if "" in present:
            choices.append((NOT_RECORDED_CHOICE, "Not recorded"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        match = {self.field: "" if value == NOT_RECORDED_CHOICE else value}
        if not self.reply_to_row:
            return queryset.filter(role=Message.Role.ASSISTANT, **match)
        replies = Message.objects.filter(
            role=Message.Role.ASSISTANT, **match, **{self.reply_to_row: OuterRef("pk")}
        )
        return queryset.filter(Exists(replies))


def writer_filters(reply_to_row: str = "", note: str = "") -> tuple[type[WriterFilter], ...]:
    """The model name, endpoint and action format filters for one admin: `reply_to_row`
    as in WriterFilter, `note` the words after each title ("(any reply)")."""
    titles = {"model_name": "model name", "endpoint": "endpoint", "action_format": "action format"}
    return tuple(
        type(
            f"{''.join(w.title() for w in name.split('_'))}WriterFilter",
            (WriterFilter,),
            {
                "field": name,
                "title": f"{titles[name]} {note}".strip(),
                "parameter_name": name,
                "reply_to_row": reply_to_row,
            },
        )
        for name in WRITER_FIELDS
    )
