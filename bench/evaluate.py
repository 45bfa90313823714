"""Evaluation benchmark: the whole analysis suite through `manage.py evaluate`
against a scripted model, and what its code alone costs, in the same run.

    make bench-evaluate           (BENCH_CONCURRENCY=4 by default)

Baseline: the suite's reference solutions run one after another in one sandbox
that is already up (each in its task's directory, with its files): the code's
own time. App: `manage.py evaluate --suite analysis --concurrency 4` with the
scripted model of the tests writing those same references — for every task a
conversation, uploads, a sandbox started and removed, two model requests, the
stored turn — on the sandbox runtime CODEACT_SANDBOX_RUNTIME chooses. Target:
the whole suite in under a minute at concurrency 4.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codeact_web.settings")
os.environ.setdefault("CODEACT_CHANNEL_PREFIX", f"codeact-bench-{os.getpid()}")
os.environ["CODEACT_POOL_SIZE"] = "0"  # every task starts its sandbox, as on a cold pool

from bench.database import drop_own_database, migrate, use_own_database  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

use_own_database()

MODEL_PORT = free_port()
os.environ["CODEACT_MODELS"] = json.dumps(
    [
        {
            "key": "scripted",
            "base_url": f"http://127.0.0.1:{MODEL_PORT}/v1",
            "model": "scripted",
            "action_format": "fence",
        }
    ]
)
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
TARGET_SECONDS = 60.0


def baseline(suite: object) -> float:
    """Seconds the references take one after another in one sandbox that is up."""
    from django.conf import settings

    from sandbox.api import Limits
    from sandbox.docker_backend import DockerSandbox, docker_client
    from sandbox.image_tag import image_tag

    limits = Limits(cell_timeout=120.0, interrupt_grace=2.0, memory_bytes=1024 << 20)
    sandbox = DockerSandbox(
        docker_client(),
        image_tag(),
        limits,
        {"codeact.bench": "1"},
        runtime=settings.CODEACT_SANDBOX_RUNTIME,
    )
    try:
        if not sandbox.warm.wait(120):
            raise RuntimeError("the baseline sandbox did not start")
        for task in suite.tasks:  # type: ignore[attr-defined]
            for name, content in task.files.items():
                sandbox.put_file(f"{task.id}/{name}", content)
        took = 0.0
        for task in suite.tasks:  # type: ignore[attr-defined]
            sandbox.execute(f"%reset -f\nimport os\nos.chdir('/workspace/{task.id}')")
            started = time.perf_counter()
            result = sandbox.execute(task.reference)
            took += time.perf_counter() - started
            if result.status != "ok":
                raise RuntimeError(f"{task.id}: the reference failed: {result.outputs}")
        return took
    finally:
        sandbox.close()


def main() -> None:
    from django.conf import settings
    from django.core.management import call_command

    from evals.models import Evaluation
    from evals.suites import get_suite
    from tests.support.eval_solver import solves_all
    from tests.support.scripted_model import ScriptedModelServer

    suite = get_suite("analysis")
    code_only = baseline(suite)

    server = ScriptedModelServer()
    server.port = MODEL_PORT
    server.record = False
    server.route = solves_all(suite)
    server.start()
    try:
        out = io.StringIO()
        started = time.perf_counter()
        call_command(
            "evaluate",
            *("--model", "scripted", "--suite", "analysis"),
            *("--concurrency", str(CONCURRENCY)),
            stdout=out,
        )
        took = time.perf_counter() - started
    finally:
        server.stop()
    evaluation = Evaluation.objects.get()
    solved = evaluation.runs.filter(success=True).count()
    from sandbox.docker_backend import docker_client
    from sandbox.runtime import choose_runtime

    runtime = choose_runtime(docker_client(), settings.CODEACT_SANDBOX_RUNTIME).name
    n = len(suite.tasks)
    rows = [
        (f"baseline: the {n} references one after another in one sandbox that is up", code_only),
        (f"evaluate --suite analysis --concurrency {CONCURRENCY} [{runtime}]", took),
        (
            "  per task: the mean wall time of a run",
            sum(r.wall_time for r in evaluation.runs.all()) / n,
        ),
    ]
    print(f"{'row':<78}{'seconds':>10}")
    for name, seconds in rows:
        print(f"{name:<78}{seconds:>10.1f}")
    print()
    print(f"evaluate / baseline: {took / code_only:.1f}x; solved {solved}/{n}")
    verdict = "met" if took < TARGET_SECONDS and solved == n else "MISSED"
    print(f"target: the analysis suite in under {TARGET_SECONDS:.0f} s, all solved: {verdict}")


if __name__ == "__main__":
    import django

    django.setup()
    try:
        migrate()
        main()
    finally:
        drop_own_database()
