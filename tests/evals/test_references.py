"""Every task's reference, run in a real sandbox kernel, prints an answer its checker
accepts: the expected values (computed in plain Python) agree with what pandas,
sympy and the toolbox module compute where models run their code.

One sandbox for all tasks: each task's files (and the toolbox module) go into a
directory of their own, and each reference runs in a cleared namespace there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from evals.suite import Suite, Task
from evals.suites import get_suite, suite_names
from sandbox.api import Limits
from sandbox.docker_backend import DockerSandbox, docker_client
from sandbox.image_tag import image_tag

pytestmark = [pytest.mark.integration]

LIMITS = Limits(cell_timeout=60.0, interrupt_grace=2.0, memory_bytes=1024 << 20)

CASES = [(name, task.id) for name in suite_names() for task in get_suite(name).tasks]


def _directory(suite: Suite, task: Task) -> str:
    return f"{suite.name}/{task.id}"


@pytest.fixture(scope="module")
def box() -> Iterator[Any]:
    sandbox = DockerSandbox(docker_client(), image_tag(), LIMITS, {"codeact.test": "1"})
    try:
        if not sandbox.warm.wait(90):
            raise AssertionError("the sandbox's kernel did not start within 90 s")
        for name in suite_names():
            suite = get_suite(name)
            for task in suite.tasks:
                where = _directory(suite, task)
                for file_name, content in task.files.items():
                    sandbox.put_file(f"{where}/{file_name}", content)
                if suite.toolbox is not None:
                    source = suite.toolbox.source.encode()
                    sandbox.put_file(f"{where}/{suite.toolbox.module}.py", source)
        yield sandbox
    finally:
        sandbox.close()


def _stream(result: Any, name: str) -> str:
    return "".join(
        o.get("text", "")
        for o in result.outputs
        if o["output_type"] == "stream" and o.get("name") == name
    )


@pytest.mark.parametrize(("suite_name", "task_id"), CASES, ids=[f"{s}:{t}" for s, t in CASES])
def test_the_reference_answer_is_accepted(box: Any, suite_name: str, task_id: str) -> None:
    suite = get_suite(suite_name)
    task = suite.task(task_id)
    where = f"/workspace/{_directory(suite, task)}"
    # A clean namespace in the task's directory, and its toolbox module imported
    # afresh from there (as a new conversation would).
    module = suite.toolbox.module if suite.toolbox else ""
    setup = box.execute(
        f"%reset -f\nimport os, sys\nos.makedirs({where!r}, exist_ok=True)\nos.chdir({where!r})\n"
        f"sys.modules.pop({module!r}, None)"
    )
    assert setup.status == "ok", setup.outputs
    result = box.execute(task.reference)
    assert result.status == "ok", (task_id, result.outputs)
    # No warning either: a deprecation today is a broken reference tomorrow.
    assert not _stream(result, "stderr"), (task_id, _stream(result, "stderr"))
    lines = _stream(result, "stdout").strip().splitlines()
    assert lines, f"{task_id}: the reference printed nothing"
    verdict = task.check(lines[-1])
    assert verdict.ok, f"{task_id}: {lines[-1]!r}: {verdict.reason}"
