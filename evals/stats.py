"""Numbers for the evaluation pages and exports: per action format, how often the
model solved its tasks (with a 95% Wilson score interval, because suites are small
and a bare percentage hides how little 7 of 10 says), what it cost in turns,
executions, tokens and time, why runs failed, each task's outcome, and how two
evaluations differ.

Pure: every function takes runs that are already loaded (`EvaluationRun` rows or
anything with the same attributes) and returns plain dataclasses, so the pages,
the exports and the tests compute the same numbers the same way. No numpy: the
web process does not have it, and a Wilson interval is four lines of arithmetic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

# The 97.5th percentile of the standard normal distribution: a two-sided 95% interval.
Z95 = 1.959963984540054

# Error classes as a reviewer reads them (the choices of EvaluationRun.error_class,
# repeated here so this module stays free of Django).
ERROR_LABELS: dict[str, str] = {
    "wrong_answer": "Wrong answer",
    "no_answer": "No answer given",
    "code_error": "Code kept failing",
    "execution_limit": "Execution limit reached",
    "malformed_action": "Malformed action",
    "model_error": "Model endpoint failed",
    "sandbox_error": "Sandbox failed",
    "timeout": "Took too long",
    "internal_error": "Internal error",
}
# A failed run the harness gave no class (it should not happen, but must still count).
UNCLASSIFIED = "unclassified"
ERROR_LABELS[UNCLASSIFIED] = "Failed, no class recorded"


class RunLike(Protocol):
    """What the statistics read from a run (EvaluationRun has all of it)."""

    task: str
    action_format: str
    repetition: int
    success: bool
    error_class: str
    turns: int
    executions: int
    prompt_tokens: int | None  # None: the endpoint reported no usage
    completion_tokens: int | None
    wall_time: float
    finished_at: Any
    expected: str


def wilson_interval(successes: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a success proportion, as fractions in [0, 1].

    Unlike the normal approximation it never leaves [0, 1] and stays honest at 0
    or n successes (0/10 still allows a true rate of up to 28%). With no runs
    nothing is known, so the interval is all of [0, 1].
    """
    if runs < 0 or successes < 0 or successes > runs:
        raise ValueError(f"need 0 <= successes <= runs, got {successes} of {runs}")
    if z <= 0:
        raise ValueError(f"z must be positive, got {z}")
    if runs == 0:
        return 0.0, 1.0
    p = successes / runs
    z2 = z * z
    denominator = 1 + z2 / runs
    centre = (p + z2 / (2 * runs)) / denominator
    half = z * math.sqrt(p * (1 - p) / runs + z2 / (4 * runs * runs)) / denominator
    # At 0 or n successes one end is exact; rounding must not move it off 0 or 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == runs else min(1.0, centre + half)
    return low, high


def difference_interval(
    successes_a: int, runs_a: int, successes_b: int, runs_b: int, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval (his method 10) for rate B minus rate A,
    built from the two Wilson intervals; None when either side has no runs.

    It tells a reviewer whether a difference between two evaluations is more than
    the noise of small suites: an interval that contains 0 is not a clear change.
    """
    if runs_a == 0 or runs_b == 0:
        return None
    p_a, p_b = successes_a / runs_a, successes_b / runs_b
    low_a, high_a = wilson_interval(successes_a, runs_a, z)
    low_b, high_b = wilson_interval(successes_b, runs_b, z)
    d = p_b - p_a
    low = d - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = d + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return max(-1.0, low), min(1.0, high)


def finished(run: RunLike) -> bool:
    """Whether the run has a verdict. A row the harness made when the run started
    (no end time, not solved, no error class) is still under way, or was cut off
    with the evaluation: it says nothing about the model and is left out of every
    rate and mean rather than counted as a failure."""
    return run.finished_at is not None or run.success or bool(run.error_class)


def error_key(run: RunLike) -> str:
    """The failure class of a finished, failed run (UNCLASSIFIED if it has none)."""
    return run.error_class or UNCLASSIFIED


def percent(value: float, digits: int = 0) -> str:
    """A fraction as a percentage number, rounded half up as people expect (5/8 is
    "63", where Python's own formatting rounds 62.5 to the even 62)."""
    step = Decimal(1).scaleb(-digits)
    return str(Decimal(repr(value * 100)).quantize(step, rounding=ROUND_HALF_UP))


def signed_points(value: float) -> str:
    """A difference of fractions in percentage points with its sign: "+12", "0",
    and a minus sign (U+2212) rather than a hyphen for a drop."""
    points = percent(abs(value))
    if points == "0":
        return "0"
    return ("+" if value > 0 else "\u2212") + points


def format_percent(value: float | None, digits: int = 0) -> str:
    """A fraction as a percentage for people ("74%"), or an en dash for no value."""
    if value is None:
        return "–"
    return f"{percent(value, digits)}%"


def ordered_formats(declared: Iterable[str], runs: Iterable[RunLike]) -> list[str]:
    """The evaluation's formats in the order it ran them, then any format that only
    its runs name (an evaluation edited by hand, or one from an older harness)."""
    order: list[str] = []
    for name in declared:
        if isinstance(name, str) and name and name not in order:
            order.append(name)
    for run in runs:
        if run.action_format not in order:
            order.append(run.action_format)
    return order


# ---- per format ----------------------------------------------------------------------


@dataclass(frozen=True)
class FormatSummary:
    """One action format of one evaluation."""

    format: str
    runs: int  # finished runs: the denominator of the rate
    successes: int
    unfinished: int
    low: float  # the 95% Wilson interval, as fractions
    high: float
    mean_turns: float | None
    mean_executions: float | None
    mean_tokens: float | None  # prompt plus completion, per run
    mean_wall_time: float | None  # seconds per run
    errors: dict[str, int] = field(default_factory=dict)  # error class -> failed runs

    @property
    def rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    @property
    def fraction(self) -> str:
        return f"{self.successes}/{self.runs}"

    @property
    def rate_text(self) -> str:
        return format_percent(self.rate)

    @property
    def interval_text(self) -> str:
        """The interval as printed next to the rate ("65" en dash "82%"), or a dash without runs."""
        if not self.runs:
            return "–"
        return f"{percent(self.low)}–{percent(self.high)}%"

    def as_dict(self) -> dict[str, Any]:
        """For the JSON export: every number, unrounded, plus the rate."""
        return {
            "format": self.format,
            "runs": self.runs,
            "successes": self.successes,
            "unfinished": self.unfinished,
            "success_rate": self.rate,
            "ci95_low": self.low if self.runs else None,
            "ci95_high": self.high if self.runs else None,
            "mean_turns": self.mean_turns,
            "mean_executions": self.mean_executions,
            "mean_tokens": self.mean_tokens,
            "mean_wall_time": self.mean_wall_time,
            "errors": dict(self.errors),
        }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_format(name: str, runs: Iterable[RunLike]) -> FormatSummary:
    """The summary of one format's runs (runs of other formats are ignored)."""
    return _summary(name, [r for r in runs if r.action_format == name])


def _summary(name: str, mine: Sequence[RunLike]) -> FormatSummary:
    done = [r for r in mine if finished(r)]
    successes = sum(1 for r in done if r.success)
    low, high = wilson_interval(successes, len(done))
    errors = Counter(error_key(r) for r in done if not r.success)
    return FormatSummary(
        format=name,
        runs=len(done),
        successes=successes,
        unfinished=len(mine) - len(done),
        low=low,
        high=high,
        mean_turns=_mean([r.turns for r in done]),
        mean_executions=_mean([r.executions for r in done]),
        mean_tokens=_mean(
            [
                r.prompt_tokens + r.completion_tokens
                for r in done
                if r.prompt_tokens is not None and r.completion_tokens is not None
            ]
        ),
        mean_wall_time=_mean([r.wall_time for r in done]),
        errors=dict(errors.most_common()),
    )


def summarize(formats: Iterable[str], runs: Sequence[RunLike]) -> list[FormatSummary]:
    """One summary per format, in the evaluation's order."""
    return [summarize_format(name, runs) for name in ordered_formats(formats, runs)]


def overall(runs: Sequence[RunLike]) -> FormatSummary:
    """All formats together (the list page's one number per evaluation)."""
    return _summary("all", runs)


@dataclass(frozen=True)
class ErrorCount:
    key: str
    label: str
    count: int
    by_format: dict[str, int]


def error_counts(summaries: Sequence[FormatSummary]) -> list[ErrorCount]:
    """Failed runs per error class over all formats, most frequent first, with the
    count in each format (0 where it did not occur)."""
    total: Counter[str] = Counter()
    for s in summaries:
        total.update(s.errors)
    return [
        ErrorCount(
            key=key,
            label=ERROR_LABELS.get(key, key.replace("_", " ").capitalize()),
            count=count,
            by_format={s.format: s.errors.get(key, 0) for s in summaries},
        )
        for key, count in sorted(total.items(), key=lambda item: (-item[1], item[0]))
    ]


# ---- per task ------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskCell[R: RunLike]:
    """One task in one format: its repetitions, in order."""

    format: str
    runs: list[R]

    @property
    def finished_runs(self) -> list[R]:
        return [r for r in self.runs if finished(r)]

    @property
    def successes(self) -> int:
        return sum(1 for r in self.runs if finished(r) and r.success)

    @property
    def attempts(self) -> int:
        return len(self.finished_runs)

    @property
    def rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None

    @property
    def fraction(self) -> str:
        """Like "2/3": solved in two of three finished repetitions (a dash if none ran)."""
        return f"{self.successes}/{self.attempts}" if self.runs else "–"

    @property
    def outcome(self) -> str:
        """all, some, none, or pending (a CSS class and a word for the cell)."""
        if not self.attempts:
            return "pending" if self.runs else "missing"
        if self.successes == self.attempts:
            return "all"
        return "some" if self.successes else "none"


@dataclass(frozen=True)
class TaskRow[R: RunLike]:
    task: str
    cells: list[TaskCell[R]]  # one per format, in the evaluation's order
    expected: str

    @property
    def solved_everywhere(self) -> bool:
        return all(c.outcome == "all" for c in self.cells if c.runs)


def task_rows[R: RunLike](formats: Iterable[str], runs: Sequence[R]) -> list[TaskRow[R]]:
    """One row per task, in the order the tasks first ran; in each, one cell per
    format with that task's repetitions sorted by repetition number."""
    order = ordered_formats(formats, runs)
    grouped: dict[str, dict[str, list[R]]] = {}
    expected: dict[str, str] = {}
    for run in runs:
        grouped.setdefault(run.task, {}).setdefault(run.action_format, []).append(run)
        if run.expected and not expected.get(run.task):
            expected[run.task] = run.expected
    return [
        TaskRow(
            task=task,
            cells=[
                TaskCell(name, sorted(by_format.get(name, []), key=lambda r: r.repetition))
                for name in order
            ],
            expected=expected.get(task, ""),
        )
        for task, by_format in grouped.items()
    ]


# ---- two evaluations -----------------------------------------------------------------


@dataclass(frozen=True)
class FormatDelta:
    format: str
    a: FormatSummary | None  # None: the evaluation did not run this format
    b: FormatSummary | None
    interval: tuple[float, float] | None  # 95% CI of B minus A

    @property
    def difference(self) -> float | None:
        """Rate B minus rate A, as a fraction (None unless both have runs)."""
        if self.a is None or self.b is None or self.a.rate is None or self.b.rate is None:
            return None
        return self.b.rate - self.a.rate

    @property
    def difference_text(self) -> str:
        """In percentage points with a sign ("+12 pp"; a minus sign, not a hyphen, below 0)."""
        return "–" if self.difference is None else f"{signed_points(self.difference)} pp"

    @property
    def interval_text(self) -> str:
        if self.interval is None:
            return "–"
        low, high = self.interval
        return f"{signed_points(low)} to {signed_points(high)} pp"

    @property
    def clear(self) -> bool:
        """Whether the 95% interval of the difference excludes 0."""
        return self.interval is not None and (self.interval[0] > 0 or self.interval[1] < 0)


@dataclass(frozen=True)
class TaskDelta[R: RunLike]:
    task: str
    a: list[TaskCell[R] | None]  # per format of the comparison; None: not run there
    b: list[TaskCell[R] | None]
    change: str  # better, worse, mixed, same, only_a, only_b

    @property
    def changed(self) -> bool:
        return self.change in ("better", "worse", "mixed")

    @property
    def pairs(self) -> list[tuple[TaskCell[R] | None, TaskCell[R] | None]]:
        return list(zip(self.a, self.b, strict=True))


@dataclass(frozen=True)
class Comparison[R: RunLike]:
    formats: list[str]
    deltas: list[FormatDelta]
    tasks: list[TaskDelta[R]]

    @property
    def changed_tasks(self) -> int:
        return sum(1 for t in self.tasks if t.changed)


CHANGE_ORDER = {"worse": 0, "mixed": 1, "better": 2, "only_a": 3, "only_b": 4, "same": 5}


def _change(
    a_cells: Sequence[TaskCell[Any] | None], b_cells: Sequence[TaskCell[Any] | None]
) -> tuple[str, float]:
    """How a task moved from A to B, and by how much (the sum over formats of the
    change in its solve rate, to put the largest moves first)."""
    ups = downs = 0
    total = 0.0
    in_a = any(c is not None and c.attempts for c in a_cells)
    in_b = any(c is not None and c.attempts for c in b_cells)
    for ca, cb in zip(a_cells, b_cells, strict=True):
        if ca is None or cb is None or ca.rate is None or cb.rate is None:
            continue
        step = cb.rate - ca.rate
        total += step
        ups += step > 1e-9
        downs += step < -1e-9
    if ups and downs:
        return "mixed", total
    if ups:
        return "better", total
    if downs:
        return "worse", total
    if in_a and not in_b:
        return "only_a", 0.0
    if in_b and not in_a:
        return "only_b", 0.0
    return "same", 0.0


def compare[R: RunLike](
    formats_a: Iterable[str],
    runs_a: Sequence[R],
    formats_b: Iterable[str],
    runs_b: Sequence[R],
) -> Comparison[R]:
    """Evaluation B against evaluation A: per format the two summaries and the
    difference of their rates; per task the outcome on each side, tasks that got
    worse first, then mixed, then better (largest change first within each), then
    tasks only one side ran, then unchanged ones, each group in A's task order."""
    order = ordered_formats([*ordered_formats(formats_a, runs_a), *formats_b], runs_b)
    summaries_a = {s.format: s for s in summarize(formats_a, runs_a)}
    summaries_b = {s.format: s for s in summarize(formats_b, runs_b)}
    deltas = []
    for name in order:
        a, b = summaries_a.get(name), summaries_b.get(name)
        interval = (
            difference_interval(a.successes, a.runs, b.successes, b.runs)
            if a is not None and b is not None
            else None
        )
        deltas.append(FormatDelta(name, a, b, interval))

    rows_a = {row.task: row for row in task_rows(order, runs_a)}
    rows_b = {row.task: row for row in task_rows(order, runs_b)}
    tasks = list(rows_a) + [t for t in rows_b if t not in rows_a]
    ranked: list[tuple[int, float, int, TaskDelta[R]]] = []
    for position, task in enumerate(tasks):
        a_cells = _cells(rows_a.get(task), order)
        b_cells = _cells(rows_b.get(task), order)
        change, size = _change(a_cells, b_cells)
        ranked.append(
            (CHANGE_ORDER[change], -abs(size), position, TaskDelta(task, a_cells, b_cells, change))
        )
    ranked.sort(key=lambda item: item[:3])
    return Comparison(order, deltas, [item[3] for item in ranked])


def _cells[R: RunLike](row: TaskRow[R] | None, order: Sequence[str]) -> list[TaskCell[R] | None]:
    if row is None:
        return [None] * len(order)
    by_format = {c.format: c for c in row.cells}
    return [
        by_format[name] if by_format.get(name) and by_format[name].runs else None for name in order
    ]


# ---- what makes two evaluations comparable -------------------------------------------


def setting_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The settings (and identity fields) that differ between two evaluations, as
    (name, value in A, value in B): a comparison across different prompts or
    temperatures measures those, not only the model."""
    keys = list(a) + [k for k in b if k not in a]
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]
