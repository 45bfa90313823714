"""`manage.py evaluate` end to end: the scripted model solves a known subset of
the tools suite in each action format and fails the rest in known ways (a
wrong answer, code that keeps failing, the execution limit, a malformed
action); the recorded success rates and error classes are exactly those.
Every run goes through the real loop and a real sandbox."""

from __future__ import annotations

import io
import re
import threading

import pytest
from django.core.management import CommandError, call_command

from chat.models import Conversation, Message, Turn
from evals import harness, stats
from evals.harness import EVALUATION_USER
from evals.models import Evaluation
from evals.suite import Suite
from evals.suites import get_suite
from tests.support.eval_solver import (
    CODE_ERROR,
    LIMIT,
    MALFORMED,
    SOLVE,
    WRONG,
    Solver,
    solves_all,
)
from tests.support.scripted_model import Script

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.usefixtures("remove_sandboxes"),
]

# The error class each failure must be recorded as, per format (a python fence has
# no malformed form: a reply without code or ANSWER line is an answer without one).
RECORDED = {
    WRONG: {"code": "wrong_answer", "call": "wrong_answer", "text": "wrong_answer"},
    CODE_ERROR: {"code": "code_error", "call": "code_error", "text": "code_error"},
    LIMIT: {"code": "execution_limit", "call": "execution_limit", "text": "execution_limit"},
    MALFORMED: {"code": "no_answer", "call": "malformed_action", "text": "malformed_action"},
}


def plan(suite: Suite) -> dict[tuple[str, str], str]:
    """(task id, format) -> behaviour: the first four tasks fail in each known way in
    every format; code solves the rest, call gets one more wrong, text two more."""
    ids = [task.id for task in suite.tasks]
    behaviour = {}
    for fmt, extra_wrong in (("code", 0), ("call", 1), ("text", 2)):
        for index, task_id in enumerate(ids):
            kinds = [WRONG, CODE_ERROR, LIMIT, MALFORMED]
            if index < 4:
                behaviour[task_id, fmt] = kinds[index]
            elif index < 4 + extra_wrong:
                behaviour[task_id, fmt] = WRONG
            else:
                behaviour[task_id, fmt] = SOLVE
    return behaviour


def test_the_tools_suite_gives_the_expected_success_rate_per_format(model_server, capsys):
    suite = get_suite("tools")
    behaviour = plan(suite)
    model_server.route = Solver(suite, behaviour)
    # Room for the longest call sequence (the limit a failure runs into stays a limit).
    room = max(len(task.calls) for task in suite.tasks) + 1
    call_command(
        "evaluate",
        *("--model", "fenced", "--suite", "tools", "--concurrency", "4"),
        *("--max-executions", str(room), "--label", "t"),
    )
    printed = capsys.readouterr().out

    evaluation = Evaluation.objects.get()
    assert evaluation.status == "done" and evaluation.formats == ["code", "call", "text"]
    assert evaluation.settings["max_executions"] == room
    runs = list(evaluation.runs.all())
    n = len(suite.tasks)
    assert len(runs) == 3 * n
    summaries = {s.format: s for s in stats.summarize(evaluation.formats, runs)}
    assert {f: (s.successes, s.runs) for f, s in summaries.items()} == {
        "code": (n - 4, n),
        "call": (n - 5, n),
        "text": (n - 6, n),
    }
    for run in runs:
        kind = behaviour[run.task, run.action_format]
        if kind == SOLVE:
            assert run.success and run.error_class == "", run
        else:
            assert not run.success, run
            assert run.error_class == RECORDED[kind][run.action_format], run

    # Each run is a real conversation of the evaluation account, its replies
    # recording the format they were written in.
    solved = next(r for r in runs if r.success and r.action_format == "text")
    assert solved.conversation.owner.username == EVALUATION_USER
    assert solved.executions == len(suite.task(solved.task).calls)
    assert solved.turn.max_executions == room  # the turn records the limit it ran under
    formats = set(
        Message.objects.filter(conversation=solved.conversation, role="assistant").values_list(
            "action_format", flat=True
        )
    )
    assert formats == {"text"}
    code = next(r for r in runs if r.success and r.action_format == "code")
    step = Message.objects.filter(conversation=code.conversation, role="assistant").first()
    assert step is not None and step.action_format == "fence"
    # Every sandbox was given back as its task ended.
    assert not Conversation.objects.filter(sandboxes__state="claimed").exists()
    # The table the command printed ends with the time it took.
    assert re.search(rf"code\s+{n - 4}/{n}", printed)
    assert re.search(r"Evaluation \d+ done in [\d.]+ s", printed)


def test_the_whole_analysis_suite_is_solved_by_its_references(model_server, capsys):
    """The references, run by the scripted model through the loop, answer every
    question right (the suite's data and its checkers agree); the command prints
    how long the suite took at concurrency 4."""
    suite = get_suite("analysis")
    model_server.route = solves_all(suite)
    call_command("evaluate", "--model", "fenced", "--suite", "analysis", "--concurrency", "4")
    evaluation = Evaluation.objects.get()
    failed = [(r.task, r.error_class, r.verdict) for r in evaluation.runs.all() if not r.success]
    assert failed == []
    assert evaluation.runs.count() == len(suite.tasks)
    print(capsys.readouterr().out)


def test_bad_arguments_are_refused_before_anything_runs(model_server):
    out = io.StringIO()
    with pytest.raises(CommandError, match="no model 'nope'"):
        call_command("evaluate", "--model", "nope", "--suite", "compute", stdout=out)
    with pytest.raises(CommandError, match="code format only"):
        call_command(
            "evaluate", "--model", "fenced", "--suite", "compute", "--formats", "call", stdout=out
        )
    with pytest.raises(CommandError, match="no such task in compute: nope"):
        call_command(
            "evaluate", "--model", "fenced", "--suite", "compute", "--tasks", "nope", stdout=out
        )
    with pytest.raises(CommandError, match="--concurrency must be at least 1"):
        call_command(
            "evaluate", "--model", "fenced", "--suite", "compute", "--concurrency", "0", stdout=out
        )
    assert not Evaluation.objects.exists()


def test_stopping_an_evaluation_keeps_what_finished_and_marks_it_stopped(model_server):
    """Ctrl+C (Evaluator.stop from another thread): the running turns are stopped
    and not counted as results, no new task starts, the evaluation is `stopped`."""
    suite = get_suite("compute")
    model_server.route = lambda body: Script(text="Thinking " * 200, delay=0.02)  # ~4 s
    evaluation = harness.start_evaluation("fenced", suite, ["code"], concurrency=2)
    evaluator = harness.Evaluator(evaluation, suite)
    threading.Timer(1.0, evaluator.stop).start()
    evaluator.run(harness.jobs_of(suite, ["code"], 1))
    evaluation.refresh_from_db()
    assert evaluation.status == "stopped" and evaluation.finished_at is not None
    assert evaluation.runs.count() == 0
    asked = Conversation.objects.filter(owner__username=EVALUATION_USER)
    assert asked.count() == 2  # the two under way; the other tasks never started
    # stopped mid-reply (a reply that ran to its end would have made the turn `done`)
    assert {t.status for t in Turn.objects.filter(conversation__in=asked)} == {"stopped"}
