"""Evaluations in the admin: read-only, for finding runs by model, endpoint, suite
and outcome (the review pages show them as tables and charts)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from evals.models import Evaluation, EvaluationRun


class ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnly):
    list_display = [
        "id",
        "label",
        "suite",
        "model_key",
        "model_name",
        "endpoint",
        "status",
        "created_at",
    ]
    list_filter = ["suite", "status", "model_name", "endpoint"]
    search_fields = ["label", "model_key", "model_name"]
    date_hierarchy = "created_at"


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ReadOnly):
    list_display = [
        "id",
        "evaluation",
        "task",
        "action_format",
        "repetition",
        "success",
        "error_class",
    ]
    list_filter = [
        "action_format",
        "success",
        "error_class",
        "evaluation__suite",
        "evaluation__model_name",
        "evaluation__endpoint",
    ]
    search_fields = ["task", "answer", "verdict"]
    raw_id_fields = ["evaluation", "conversation", "turn"]
