"""evals.stats: the Wilson interval against published values and against its
definition, and the summaries, task rows and comparison on runs made in memory
(no database: the module is pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from evals import stats

# ---- Wilson score interval ------------------------------------------------------------

# (successes, runs, low, high): the 0/10, 10/10, 5/10 and 74/100 cases, and the worked
# examples of Newcombe, "Two-sided confidence intervals for the single proportion"
# (Statistics in Medicine 17, 1998), Table I, method 3.
KNOWN = [
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (5, 10, 0.2366, 0.7634),
    (74, 100, 0.6463, 0.8160),
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize("successes,runs,low,high", KNOWN)
def test_wilson_interval_matches_published_values(successes, runs, low, high):
    got = stats.wilson_interval(successes, runs)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_is_exact_at_the_ends():
    assert stats.wilson_interval(0, 10)[0] == 0.0
    assert stats.wilson_interval(10, 10)[1] == 1.0
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)  # no runs: nothing is known


def _score_bound(successes: int, runs: int, lower: bool) -> float:
    """A bound found from the definition, by bisection: the true rate p at which the
    observed rate is exactly z standard errors (computed at p) away."""
    observed = successes / runs

    def excess(p: float) -> float:
        return (observed - p) ** 2 - stats.Z95**2 * p * (1 - p) / runs

    lo, hi = (0.0, observed) if lower else (observed, 1.0)
    if excess(lo if lower else hi) <= 0:  # the bound is the end of [0, 1] itself
        return lo if lower else hi
    for _ in range(200):
        mid = (lo + hi) / 2
        outside = excess(mid) > 0
        if lower:
            lo, hi = (mid, hi) if outside else (lo, mid)
        else:
            lo, hi = (lo, mid) if outside else (mid, hi)
    return (lo + hi) / 2


@pytest.mark.parametrize("runs", [1, 2, 3, 7, 10, 30, 100, 1000])
def test_wilson_interval_solves_its_defining_equation(runs):
    for successes in sorted({0, 1, runs // 3, runs // 2, runs - 1, runs}):
        if not 0 <= successes <= runs:
            continue
        low, high = stats.wilson_interval(successes, runs)
        assert low == pytest.approx(_score_bound(successes, runs, True), abs=1e-9)
        assert high == pytest.approx(_score_bound(successes, runs, False), abs=1e-9)
        assert 0.0 <= low <= successes / runs <= high <= 1.0


def test_wilson_interval_narrows_with_more_runs():
    low10, high10 = stats.wilson_interval(5, 10)
    low100, high100 = stats.wilson_interval(50, 100)
    assert high100 - low100 < (high10 - low10) / 2


@pytest.mark.parametrize(
    "successes,runs", [(-1, 10), (11, 10), (0, -1), (1, 0)], ids=["negative", "more", "n<0", "n=0"]
)
def test_wilson_interval_refuses_impossible_counts(successes, runs):
    with pytest.raises(ValueError, match="successes"):
        stats.wilson_interval(successes, runs)


def test_difference_interval_matches_newcombe():
    # Newcombe, "Interval estimation for the difference between independent
    # proportions" (Statistics in Medicine 17, 1998): 56/70 against 48/80, method 10.
    low, high = stats.difference_interval(48, 80, 56, 70)  # type: ignore[misc]
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert stats.difference_interval(0, 0, 5, 10) is None


# ---- runs in memory ------------------------------------------------------------------

DONE = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class Run:
    task: str
    action_format: str
    success: bool
    repetition: int = 0
    error_class: str = ""
    turns: int = 2
    executions: int = 1
    prompt_tokens: int | None = 100
    completion_tokens: int | None = 20
    wall_time: float = 1.0
    finished_at: Any = DONE
    expected: str = ""


def failed(task: str, fmt: str, error: str = "wrong_answer", **kw: Any) -> Run:
    return Run(task, fmt, False, error_class=error, **kw)


def test_runs_whose_endpoint_reported_no_usage_are_left_out_of_mean_tokens():
    runs = [
        Run("t1", "code", True, prompt_tokens=None, completion_tokens=None),
        Run("t2", "code", True, prompt_tokens=300, completion_tokens=40),
    ]
    (code,) = stats.summarize(["code"], runs)
    assert code.mean_tokens == pytest.approx(340)  # not 170: none is not zero
    (nothing,) = stats.summarize(["code"], runs[:1])
    assert nothing.mean_tokens is None  # shown as a dash, not as 0


def test_summary_per_format_in_the_evaluations_order():
    runs = [
        Run("t1", "code", True, turns=2, executions=1, prompt_tokens=100, completion_tokens=20),
        Run("t2", "code", True, turns=4, executions=3, prompt_tokens=300, completion_tokens=40),
        failed("t3", "code", "code_error", turns=6, executions=5, wall_time=5.0),
        Run("t1", "call", True, wall_time=2.0),
        failed("t2", "call", "malformed_action"),
        failed("t3", "call", "malformed_action"),
        # under way: no verdict yet, left out of every number
        Run("t4", "call", False, finished_at=None, turns=50),
    ]
    code, call, text = stats.summarize(["code", "call", "text"], runs)
    assert (code.format, code.runs, code.successes, code.unfinished) == ("code", 3, 2, 0)
    assert code.rate == pytest.approx(2 / 3)
    assert (code.low, code.high) == stats.wilson_interval(2, 3)
    assert code.mean_turns == pytest.approx(4.0)
    assert code.mean_executions == pytest.approx(3.0)
    assert code.mean_tokens == pytest.approx((120 + 340 + 120) / 3)
    assert code.mean_wall_time == pytest.approx((1 + 1 + 5) / 3)
    assert code.errors == {"code_error": 1}
    assert (code.fraction, code.rate_text) == ("2/3", "67%")
    assert (call.runs, call.successes, call.unfinished) == (3, 1, 1)
    assert call.mean_turns == pytest.approx(2.0)  # the unfinished run's 50 turns are not in it
    assert call.errors == {"malformed_action": 2}
    assert (text.runs, text.rate, text.mean_turns, text.interval_text) == (0, None, None, "–")
    every = stats.overall(runs)
    assert (every.runs, every.successes) == (6, 3)
    exported = code.as_dict()
    assert exported["success_rate"] == pytest.approx(2 / 3)
    assert exported["ci95_low"] == code.low and exported["errors"] == {"code_error": 1}


def test_formats_only_the_runs_name_come_last():
    runs = [Run("t1", "text", True), Run("t1", "code", True)]
    assert stats.ordered_formats(["code"], runs) == ["code", "text"]
    assert stats.ordered_formats(["call", "call", 3, ""], []) == ["call"]


def test_a_finished_failure_without_a_class_still_counts():
    runs = [Run("t1", "code", False), failed("t2", "code")]
    (code,) = stats.summarize(["code"], runs)
    assert (code.runs, code.successes) == (2, 0)
    assert code.errors == {"unclassified": 1, "wrong_answer": 1}
    counts = stats.error_counts([code])
    assert [(e.key, e.count) for e in counts] == [("unclassified", 1), ("wrong_answer", 1)]
    assert counts[0].label == "Failed, no class recorded"


def test_error_counts_over_formats_most_frequent_first():
    runs = [
        failed("t1", "code", "timeout"),
        failed("t1", "call", "malformed_action"),
        failed("t2", "call", "malformed_action"),
        failed("t3", "call", "timeout"),
        failed("t4", "call", "timeout"),
    ]
    counts = stats.error_counts(stats.summarize(["code", "call"], runs))
    assert [(e.key, e.label, e.count, e.by_format) for e in counts] == [
        ("timeout", "Took too long", 3, {"code": 1, "call": 2}),
        ("malformed_action", "Malformed action", 2, {"code": 0, "call": 2}),
    ]


def test_error_labels_match_the_models_choices():
    from evals.models import EvaluationRun

    choices = {value: str(label) for value, label in EvaluationRun.ErrorClass.choices if value}
    assert {k: v for k, v in stats.ERROR_LABELS.items() if k != stats.UNCLASSIFIED} == choices


def test_task_rows_group_repetitions_per_format():
    runs = [
        Run("sum", "code", True, repetition=1, expected="42"),
        Run("sum", "code", True, repetition=0, expected="42"),
        failed("sum", "code", repetition=2),
        Run("mean", "code", True),
        failed("mean", "call"),
        Run("sum", "call", False, finished_at=None),
    ]
    rows = stats.task_rows(["code", "call"], runs)
    assert [r.task for r in rows] == ["sum", "mean"]
    sum_code, sum_call = rows[0].cells
    assert [r.repetition for r in sum_code.runs] == [0, 1, 2]
    assert (sum_code.fraction, sum_code.outcome) == ("2/3", "some")
    assert (sum_call.fraction, sum_call.outcome) == ("0/0", "pending")
    assert rows[0].expected == "42"
    mean_code, mean_call = rows[1].cells
    assert (mean_code.outcome, mean_call.outcome) == ("all", "none")
    assert not rows[1].solved_everywhere
    only = stats.task_rows(["code", "text"], [Run("x", "code", True)])
    assert only[0].cells[1].outcome == "missing" and only[0].cells[1].fraction == "–"
    assert only[0].solved_everywhere


# ---- comparison -----------------------------------------------------------------------


def test_comparison_per_format_and_changed_tasks_first():
    a = [
        Run("steady", "code", True),
        failed("improves", "code"),
        Run("regresses", "code", True),
        Run("regresses-a-bit", "code", True, repetition=0),
        Run("regresses-a-bit", "code", True, repetition=1),
        Run("dropped", "code", True),
        Run("steady", "call", True),
    ]
    b = [
        Run("steady", "code", True),
        Run("improves", "code", True),
        failed("regresses", "code"),
        Run("regresses-a-bit", "code", True, repetition=0),
        failed("regresses-a-bit", "code", repetition=1),
        Run("added", "code", True),
        Run("steady", "text", True),
    ]
    result = stats.compare(["code", "call"], a, ["code", "text"], b)
    assert result.formats == ["code", "call", "text"]
    code, call, text = result.deltas
    assert (code.a.fraction, code.b.fraction) == ("5/6", "4/6")  # type: ignore[union-attr]
    assert code.difference == pytest.approx(-1 / 6)
    assert code.difference_text == "\u221217 pp"
    assert code.interval == stats.difference_interval(5, 6, 4, 6)
    assert not code.clear  # six runs a side say little about a 17-point drop
    assert call.b is None and call.difference is None and call.difference_text == "–"
    assert text.a is None and text.b.rate == 1.0  # type: ignore[union-attr]
    order = [(t.task, t.change) for t in result.tasks]
    assert order == [
        ("regresses", "worse"),
        ("regresses-a-bit", "worse"),
        ("improves", "better"),
        ("dropped", "only_a"),
        ("added", "only_b"),
        ("steady", "same"),
    ]
    assert result.changed_tasks == 3
    steady = result.tasks[-1]
    (code_pair, call_pair, text_pair) = steady.pairs
    assert code_pair[0].fraction == "1/1" and call_pair[1] is None  # type: ignore[union-attr]
    assert text_pair[0] is None and text_pair[1].fraction == "1/1"  # type: ignore[union-attr]


def test_mixed_change_and_clear_difference():
    a = [Run("t", "code", True), failed("t", "call")]
    b = [failed("t", "code"), Run("t", "call", True)]
    (task,) = stats.compare(["code", "call"], a, ["code", "call"], b).tasks
    assert task.change == "mixed" and task.changed
    many_a = [failed(f"t{i}", "code") for i in range(40)]
    many_b = [Run(f"t{i}", "code", True) for i in range(40)]
    (delta,) = stats.compare(["code"], many_a, ["code"], many_b).deltas
    assert delta.clear and delta.difference_text == "+100 pp"
    assert delta.interval_text.startswith("+")


def test_setting_differences():
    a = {"suite": "analysis", "temperature": 0.0, "prompt_digest": "abc"}
    b = {"suite": "analysis", "temperature": 0.7, "max_tokens": 512, "prompt_digest": "abc"}
    assert stats.setting_differences(a, b) == [
        ("temperature", 0.0, 0.7),
        ("max_tokens", None, 512),
    ]
    assert stats.setting_differences(a, dict(a)) == []


def test_format_percent():
    assert stats.format_percent(None) == "–"
    assert stats.format_percent(0.74) == "74%"
    assert stats.format_percent(5 / 8) == "63%"  # half up, as people round
    assert stats.format_percent(2 / 3) == "67%"
    assert stats.format_percent(0.0) == "0%" and stats.format_percent(1.0) == "100%"
    assert stats.signed_points(0.25) == "+25"
    assert stats.signed_points(-1 / 6) == "\u221217"
    assert stats.signed_points(0.004) == stats.signed_points(-0.004) == "0"
    assert stats.format_percent(0.7451, 1) == "74.5%"
