"""The scripted model's side of an evaluation: it recognises the task from the
question and the step from the replies so far, then solves the task (the code
format runs the task's reference and answers what it printed; the call formats
make the reference calls one by one) or fails in a chosen way. Used by the
evaluation tests and by bench/evaluate.py."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from evals.suite import Suite, Task
from tests.support.scripted_model import Script

SOLVE, WRONG, CODE_ERROR, LIMIT, MALFORMED = "solve", "wrong", "code_error", "limit", "malformed"


def format_of(body: dict[str, Any]) -> str:
    """The action format a request is in: tools for calls, Action lines for text."""
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


def solves_all(suite: Suite) -> Solver:
    """A solver that solves every task of the suite in the code format."""
    return Solver(suite, {(task.id, "code"): SOLVE for task in suite.tasks})
