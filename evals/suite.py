"""What a suite is: tasks, each with a question, seeded input files and a checker
that decides from the final answer alone whether the task was solved.

Pure: building a suite reads and writes nothing (its files are generated in
memory from fixed seeds, the same bytes every time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat.agent.functions import FunctionSpec

# Added to every question: the checker reads the value on this line (or in
# <solution> tags, which CodeAct models write), never the rest of the wording.
ANSWER_INSTRUCTION = (
    "When you have the result, end your reply with one last line of the form "
    "`ANSWER: <value>` holding only the value asked for."
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # why, in words a reviewer reads next to the answer


class Checker(Protocol):
    @property
    def expected(self) -> str:
        """The right answer as a reviewer reads it."""
        ...

    def __call__(self, answer: str) -> Verdict:
        """Whether `answer` (the value the model gave, already extracted) is right."""
        ...


@dataclass(frozen=True)
class Toolbox:
    """Domain functions for the tools suite: a Python module (its source is put into
    /workspace, so code imports it) and the functions it offers, described once for
    all three action formats."""

    module: str  # its name in /workspace, e.g. "travel"
    source: str
    functions: tuple[FunctionSpec, ...]

    def describe(self) -> str:
        """The functions as the question lists them: signature and what each does."""
        return "\n".join(f"- {spec.signature}: {spec.description}" for spec in self.functions)


@dataclass(frozen=True)
class Task:
    id: str  # unique within its suite, short (it names the row on the results page)
    question: str  # as a user would ask it, without ANSWER_INSTRUCTION
    check: Checker
    files: Mapping[str, bytes] = field(default_factory=dict)  # name in /workspace -> content
    # Code that solves it and prints the answer as its last line of output, run in
    # /workspace with the files (and the toolbox module): checks the suite's data,
    # and is what a scripted model writes in the tests.
    reference: str = ""
    # Tools suite: the calls a solution makes, in order (name, arguments), for the
    # formats that call one function per action.
    calls: tuple[tuple[str, Mapping[str, Any]], ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    description: str  # what it measures, one or two sentences
    tasks: tuple[Task, ...]
    toolbox: Toolbox | None = None  # the tools suite's functions

    def task(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)
