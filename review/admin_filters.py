"""The admin's filters for conversation logs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from chat.models import Turn
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
