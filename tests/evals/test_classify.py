"""How a finished task is classed, from the rows its turn left (pure: the rows are
stand-ins with the fields `classify` reads)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from evals.checkers import Integer
from evals.harness import classify
from evals.suite import Task

TASK = Task(id="t", question="How many?", check=Integer(42))
LIMIT = "execution_limit"


def result(
    status: str = "done",
    answer: str = "",
    notices: tuple[str, ...] = (),
    cells: tuple[str, ...] = (),
    error_code: str = "",
) -> Any:
    turn = SimpleNamespace(error_code=error_code, error=f"error {error_code}" if error_code else "")
    return SimpleNamespace(
        status=status,
        turn=turn,
        answer=answer,
        notices=list(notices),
        executions=[SimpleNamespace(status=s) for s in cells],
    )


@pytest.mark.parametrize(
    ("given", "timed_out", "success", "error_class"),
    [
        (result(answer="It is 42.\nANSWER: 42"), False, True, ""),
        (result(answer="ANSWER: 41"), False, False, "wrong_answer"),
        (result(answer="It is 42."), False, False, "no_answer"),
        (result(status="failed", error_code="model_timeout"), False, False, "model_error"),
        (result(status="failed", error_code="sandbox_limit"), False, False, "sandbox_error"),
        (result(status="failed", error_code="internal_error"), False, False, "internal_error"),
        (result(status="interrupted", error_code="worker_lost"), False, False, "internal_error"),
        (result(status="stopped"), True, False, "timeout"),
        (result(notices=("malformed_action",)), False, False, "malformed_action"),
        (result(notices=(LIMIT,), cells=("ok", "error")), False, False, "code_error"),
        (result(notices=(LIMIT,), cells=("error", "ok")), False, False, "execution_limit"),
    ],
)
def test_each_ending_has_its_class(given, timed_out, success, error_class):
    outcome = classify(given, TASK, timed_out)
    assert (outcome.success, outcome.error_class) == (success, error_class)
    assert outcome.verdict  # a reason, always


def test_the_answer_kept_is_the_value_the_checker_read():
    outcome = classify(result(answer="Counting...\n**ANSWER:** 42."), TASK, False)
    assert outcome.answer == "42" and outcome.success
