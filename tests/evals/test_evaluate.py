"""`manage.py evaluate` end to end: the scripted model solves a known subset of
the tools suite in each action format and fails the rest in known ways (a
wrong answer, code that keeps failing, the execution limit, a malformed
action); the recorded success rates and error classes are exactly those.
Every run goes through the real loop and a real sandbox."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from chat.models import Conversation, Message
from evals import stats
from evals.harness import EVALUATION_USER
from evals.models import Evaluation
from evals.suite import Suite, Task
from evals.suites import get_suite
from tests.support.scripted_model import Script

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.usefixtures("remove_sandboxes"),
]

# How the scripted model treats a task: solve it, or fail in one known way.
SOLVE, WRONG, CODE_ERROR, LIMIT, MALFORMED = "solve", "wrong", "code_error", "limit", "malformed"
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


def format_of(body: dict[str, Any]) -> str:
    if body.get("tools"):
        return "call"
    return "text" if "Action: function_name" in body["messages"][0]["content"] else "code"


def last_line(observation: str) -> str:
    lines = [line for line in observation.splitlines()[1:] if line.strip()]
    return lines[-1].strip() if lines else ""


def call_text(name: str, arguments: dict[str, Any]) -> str:
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in arguments.items()) + ")"


class Solver:
    """The scripted model's side of every task: picks the task from the question and
    the step from the replies so far."""

    def __init__(self, suite: Suite, behaviour: dict[tuple[str, str], str]) -> None:
        self.suite = suite
        self.behaviour = behaviour
        self.seen: Counter[tuple[str, str]] = Counter()

    def task_of(self, body: dict[str, Any]) -> Task:
        question = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return next(t for t in self.suite.tasks if question.startswith(t.question.strip()))

    def __call__(self, body: dict[str, Any]) -> Script:
        task, fmt = self.task_of(body), format_of(body)
        step = sum(1 for m in body["messages"] if m["role"] == "assistant")
        self.seen[task.id, fmt] += 1
        kind = self.behaviour[task.id, fmt]
        first = task.calls[0] if task.calls else ("", {})
        if kind == WRONG:
            return Script(text="I am sure of it.\nANSWER: not the answer")
        if kind == MALFORMED:
            if fmt == "call":
                return Script(tool_name="book_everything", tool_arguments="{}")
            if fmt == "text":
                return Script(text="Action: book_everything()\n")
            return Script(text="I cannot tell from here.")
        if kind == CODE_ERROR:
            if fmt == "code":
                return Script(text="```python\nraise ValueError('boom')\n```\n")
            if fmt == "call":
                return Script(tool_name=first[0], tool_arguments='{"no_such_argument": 1}')
            return Script(text=f"Action: {first[0]}(no_such_argument=1)\n")
        if kind == LIMIT:
            if fmt == "code":
                return Script(text="```python\nprint('still looking')\n```\n")
            if fmt == "call":
                return Script(tool_name=first[0], tool_arguments=json.dumps(dict(first[1])))
            return Script(text=f"Action: {call_text(first[0], dict(first[1]))}\n")
        # SOLVE: code runs the reference and answers what it printed; the call
        # formats make the reference calls one by one, then answer.
        if fmt == "code":
            if step == 0:
                return Script(text=f"Let me compute.\n```python\n{task.reference}\n```\n")
            return Script(text=f"Done.\nANSWER: {last_line(body['messages'][-1]['content'])}")
        if step < len(task.calls):
            name, arguments = task.calls[step]
            if fmt == "call":
                return Script(tool_name=name, tool_arguments=json.dumps(dict(arguments)))
            return Script(text=f"Action: {call_text(name, dict(arguments))}\n")
        return Script(text=f"That settles it.\nANSWER: {task.check.expected}")


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
    model_server.route = Solver(suite, {(t.id, "code"): SOLVE for t in suite.tasks})
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
