"""Reviewer pages for evaluations (`manage.py evaluate`): the list, one
evaluation's results per action format with its chart and per-task outcomes, a
comparison of two, and exports of the runs.

The same rule as transcripts: the review permission to look, the export
permission to download. Each run of an evaluation is a conversation, and its
row links to that transcript (which writes its own audit record). The numbers
come from evals.stats, so the page, the chart and the exports agree.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from chat import downloads
from chat.models import AuditRecord
from evals import chart, stats
from evals.models import Evaluation, EvaluationRun
from review.audit import record
from review.permissions import can_export, can_review, require

PAGE_SIZE = 50
CHOICES_SHOWN = 200  # evaluations offered in the comparison's selects

# A run counts once it has a verdict (evals.stats.finished, as a query).
FINISHED = Q(runs__finished_at__isnull=False) | Q(runs__success=True) | ~Q(runs__error_class="")

# Settings shown first and named for people; any other key follows as it is.
SETTING_LABELS = {
    "temperature": "Temperature",
    "max_tokens": "Max tokens",
    "max_executions": "Max executions",
    "code_format": "Model's own code format",
    "prompt_digest": "Prompt digest",
}


def _no_store(response: HttpResponse) -> HttpResponse:
    """A running evaluation changes under the page; never show a stale copy."""
    response["Cache-Control"] = "private, no-store"
    return response


def _runs(evaluation: Evaluation) -> list[EvaluationRun]:
    return list(evaluation.runs.order_by("id"))


def _name(evaluation: Evaluation) -> str:
    return evaluation.label or f"{evaluation.model_key} on {evaluation.suite}"


def _setting_label(key: str) -> str:
    return SETTING_LABELS.get(key, key.replace("_", " ").capitalize())


def _setting_value(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def settings_rows(settings: Any) -> list[tuple[str, str]]:
    """The evaluation's settings as (label, value): the known ones in a fixed
    order, then the rest by name. Anything but a JSON object is shown as it is."""
    if not isinstance(settings, dict):
        return [] if settings in (None, "") else [("Settings", _setting_value(settings))]
    known = [k for k in SETTING_LABELS if k in settings]
    rest = sorted(k for k in settings if k not in SETTING_LABELS)
    return [(_setting_label(k), _setting_value(settings[k])) for k in known + rest]


def _comparable(evaluation: Evaluation) -> dict[str, Any]:
    """What two evaluations must share to compare only the model."""
    base = {"suite": evaluation.suite, "repeat": evaluation.repeat}
    settings = evaluation.settings if isinstance(evaluation.settings, dict) else {}
    return base | {_setting_label(k): v for k, v in settings.items()}


# ---- list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListRow:
    evaluation: Evaluation
    runs: int
    successes: int

    @property
    def rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    @property
    def rate_text(self) -> str:
        return stats.format_percent(self.rate)

    @property
    def interval_text(self) -> str:
        if not self.runs:
            return ""
        low, high = stats.wilson_interval(self.successes, self.runs)
        return f"{stats.percent(low)}\u2013{stats.percent(high)}%"


def _choices() -> QuerySet[Evaluation]:
    return Evaluation.objects.only("id", "label", "model_key", "suite", "created_at")[
        :CHOICES_SHOWN
    ]


@login_required
@require_GET
def evaluation_list(request: HttpRequest) -> HttpResponse:
    """Every evaluation, newest first, with its overall success rate, and a form
    to compare two."""
    require(can_review(request.user))
    annotated = Evaluation.objects.annotate(
        finished_runs=Count("runs", filter=FINISHED),
        solved_runs=Count("runs", filter=Q(runs__success=True)),
    ).order_by("-id")
    page = Paginator(annotated, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [ListRow(e, e.finished_runs, e.solved_runs) for e in page.object_list]  # type: ignore[attr-defined]
    choices = list(_choices())
    context = {
        "rows": rows,
        "page": page,
        "choices": choices,
        "default_a": choices[1].pk if len(choices) > 1 else None,
        "default_b": choices[0].pk if choices else None,
    }
    return _no_store(render(request, "review/evaluations.html", context))


# ---- one evaluation ------------------------------------------------------------------


def evaluation_context(evaluation: Evaluation, runs: Sequence[EvaluationRun]) -> dict[str, Any]:
    """Everything the evaluation page (and half of a comparison) shows."""
    summaries = stats.summarize(evaluation.formats, runs)
    expected = evaluation.task_count * max(1, len(evaluation.formats)) * evaluation.repeat
    return {
        "evaluation": evaluation,
        "name": _name(evaluation),
        "summaries": summaries,
        "overall": stats.overall(runs),
        "errors": stats.error_counts(summaries),
        "settings_rows": settings_rows(evaluation.settings),
        "chart": _chart(summaries, f"Success rate per action format: {_name(evaluation)}"),
        "run_count": len(runs),
        "expected_runs": expected,
    }


def _chart(summaries: Sequence[stats.FormatSummary], title: str) -> SafeString | None:
    # The markup is built and escaped by evals.chart; nothing in it is raw input.
    return mark_safe(chart.evaluation_chart(summaries, title)) if summaries else None


TASK_FILTERS = {"all": "All tasks", "failed": "Tasks not always solved"}


@login_required
@require_GET
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    require(can_review(request.user))
    evaluation = get_object_or_404(Evaluation, pk=evaluation_id)
    runs = _runs(evaluation)
    shown = request.GET.get("tasks", "all")
    if shown not in TASK_FILTERS:
        shown = "all"
    rows = stats.task_rows(evaluation.formats, runs)
    if shown == "failed":
        rows = [r for r in rows if not r.solved_everywhere]
    summary = evaluation_context(evaluation, runs)
    context = summary | {
        "ev": summary,  # what the results table reads, as on the comparison
        "task_rows": rows,
        "task_total": len({r.task for r in runs}),
        "tasks_shown": shown,
        "task_filters": TASK_FILTERS,
        "can_export": can_export(request.user),
        "choices": [c for c in _choices() if c.pk != evaluation.pk],
    }
    return _no_store(render(request, "review/evaluation.html", context))


# ---- comparison ----------------------------------------------------------------------

COMPARE_TITLE = "Success rate per action format, A and B"
ID = re.compile(r"[1-9][0-9]{0,17}")


class CompareError(Exception):
    def __init__(self, status: int, messages: list[str]) -> None:
        super().__init__(" ".join(messages))
        self.status = status
        self.messages = messages


def _id(request: HttpRequest, key: str) -> tuple[int | None, str | None]:
    """The evaluation number in `key`, or why there is none."""
    raw = request.GET.get(key, "").strip()
    side = key.upper()
    if not raw:
        return None, f"Choose evaluation {side}: the address has no “{key}=”."
    if not ID.fullmatch(raw):
        return None, f"“{raw[:40]}” is not an evaluation number (for {side})."
    return int(raw), None


def _pick_two(request: HttpRequest) -> tuple[Evaluation, Evaluation]:
    """Evaluations A and B of the query; every problem with either is reported at
    once (400 for a missing or malformed id, 404 for one that does not exist)."""
    (id_a, error_a), (id_b, error_b) = _id(request, "a"), _id(request, "b")
    malformed = [e for e in (error_a, error_b) if e]
    if malformed or id_a is None or id_b is None:
        raise CompareError(400, malformed)
    if id_a == id_b:
        raise CompareError(400, ["Choose two different evaluations to compare."])
    found = Evaluation.objects.in_bulk([id_a, id_b])
    missing = [
        f"There is no evaluation {pk} (for {side})."
        for pk, side in ((id_a, "A"), (id_b, "B"))
        if pk not in found
    ]
    if missing:
        raise CompareError(404, missing)
    return found[id_a], found[id_b]


@login_required
@require_GET
def evaluation_compare(request: HttpRequest) -> HttpResponse:
    """Two evaluations side by side: their tables, a grouped chart, and each task
    that changed between them. A bad or missing id gets the form again with what
    was wrong (400, or 404 for an id that does not exist)."""
    require(can_review(request.user))
    choices = list(_choices())
    base: dict[str, Any] = {"choices": choices}
    try:
        a, b = _pick_two(request)
    except CompareError as exc:
        context = base | {
            "error": exc.messages,
            "selected_a": request.GET.get("a", ""),
            "selected_b": request.GET.get("b", ""),
        }
        response = render(request, "review/evaluation_compare.html", context, status=exc.status)
        return _no_store(response)
    runs_a, runs_b = _runs(a), _runs(b)
    comparison = stats.compare(a.formats, runs_a, b.formats, runs_b)
    names = (f"A: {_name(a)}", f"B: {_name(b)}")
    grouped = (
        # Built and escaped by evals.chart, like the evaluation page's.
        mark_safe(chart.comparison_chart(comparison.deltas, names, COMPARE_TITLE))
        if comparison.deltas
        else None
    )
    context = base | {
        "a": evaluation_context(a, runs_a),
        "b": evaluation_context(b, runs_b),
        "comparison": comparison,
        "chart": grouped,
        "differences": stats.setting_differences(_comparable(a), _comparable(b)),
        "selected_a": str(a.pk),
        "selected_b": str(b.pk),
    }
    return _no_store(render(request, "review/evaluation_compare.html", context))


# ---- exports -------------------------------------------------------------------------

CSV_COLUMNS = [
    "evaluation_id",
    "label",
    "suite",
    "model_key",
    "model_name",
    "endpoint",
    "task",
    "format",
    "repetition",
    "success",
    "error_class",
    "answer",
    "expected",
    "turns",
    "executions",
    "prompt_tokens",
    "completion_tokens",
    "wall_time",
    "conversation_id",
]

NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?")


def spreadsheet_safe(value: str) -> str:
    """A text cell that a spreadsheet will not run as a formula: answers are model
    output, and "=HYPERLINK(...)" in a CSV runs when opened. A leading apostrophe
    disarms it; numbers such as "-3.5" are left alone, since they are answers."""
    if value[:1] in ("=", "+", "-", "@", "\t", "\r") and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def _run_record(run: EvaluationRun) -> dict[str, Any]:
    return {
        "task": run.task,
        "format": run.action_format,
        "repetition": run.repetition,
        "success": run.success,
        "finished": stats.finished(run),
        "error_class": run.error_class,
        "answer": run.answer,
        "expected": run.expected,
        "verdict": run.verdict,
        "turns": run.turns,
        "executions": run.executions,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "wall_time": run.wall_time,
        "conversation_id": str(run.conversation_id) if run.conversation_id else None,
        "turn_id": run.turn_id,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def export_document(evaluation: Evaluation, runs: Sequence[EvaluationRun]) -> dict[str, Any]:
    """The JSON export: the evaluation with its settings, the summary per format
    (and over all formats), error counts, and every run."""
    summaries = stats.summarize(evaluation.formats, runs)
    return {
        "evaluation": {
            "id": evaluation.pk,
            "label": evaluation.label,
            "suite": evaluation.suite,
            "model_key": evaluation.model_key,
            "model_name": evaluation.model_name,
            "endpoint": evaluation.endpoint,
            "formats": evaluation.formats,
            "repeat": evaluation.repeat,
            "concurrency": evaluation.concurrency,
            "settings": evaluation.settings,
            "task_count": evaluation.task_count,
            "status": evaluation.status,
            "started_by": evaluation.started_by,
            "created_at": evaluation.created_at.isoformat(),
            "finished_at": evaluation.finished_at.isoformat() if evaluation.finished_at else None,
            "wall_time": evaluation.wall_time,
        },
        "summary": [s.as_dict() for s in summaries],
        "overall": stats.overall(runs).as_dict(),
        "errors": {e.key: e.count for e in stats.error_counts(summaries)},
        "runs": [_run_record(r) for r in runs],
        "exported_at": timezone.now().isoformat(),
    }


def export_csv(evaluation: Evaluation, runs: Sequence[EvaluationRun]) -> str:
    """One row per run, with the evaluation's identity repeated on each row so
    that exports of several evaluations can be concatenated and grouped."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for run in runs:
        text = [
            evaluation.label,
            evaluation.suite,
            evaluation.model_key,
            evaluation.model_name,
            evaluation.endpoint,
            run.task,
            run.action_format,
        ]
        writer.writerow(
            [
                evaluation.pk,
                *(spreadsheet_safe(v) for v in text),
                run.repetition,
                "true" if run.success else "false",
                run.error_class,
                spreadsheet_safe(run.answer),
                spreadsheet_safe(run.expected),
                run.turns,
                run.executions,
                run.prompt_tokens,
                run.completion_tokens,
                f"{run.wall_time:.3f}",
                str(run.conversation_id) if run.conversation_id else "",
            ]
        )
    return buffer.getvalue()


@login_required
@require_GET
def evaluation_export(request: HttpRequest, evaluation_id: int, fmt: str) -> HttpResponse:
    """The runs as JSON or CSV; needs the export permission and is audited (the
    answers are model output from those conversations)."""
    require(can_export(request.user))
    if fmt not in ("json", "csv"):
        raise Http404("Evaluations export as .json or .csv")
    evaluation = get_object_or_404(Evaluation, pk=evaluation_id)
    runs = _runs(evaluation)
    record(
        request.user,
        AuditRecord.Action.EXPORT_JSON,
        sorted({r.conversation_id for r in runs if r.conversation_id}, key=str),
        via="web",
        detail={"evaluation": evaluation.pk, "format": fmt},
        request=request,
    )
    name = f"evaluation-{evaluation.pk}.{fmt}"
    if fmt == "json":
        body = json.dumps(export_document(evaluation, runs), ensure_ascii=False, indent=2)
        response = downloads.attachment(body, "application/json", name)
    else:
        response = downloads.attachment(
            export_csv(evaluation, runs), "text/csv; charset=utf-8", name
        )
    return _no_store(response)
