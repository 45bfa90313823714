"""Run CodeAct Web: Daphne, a Celery worker, Celery beat, the egress proxy when
CODEACT_EGRESS=proxy and, when no model URL is configured, the bundled llama.cpp
model server.

Each process's output goes to this terminal behind a coloured prefix.
Ctrl-C (or SIGTERM) stops them all, then removes the sandboxes they started;
if one dies, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codeact_web.settings")

COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m"]
RESET = "\033[0m"
_print_lock = threading.Lock()


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def commands() -> list[tuple[str, list[str]]]:
    import django

    django.setup()
    from django.conf import settings

    host = os.environ.get("CODEACT_HOST", "127.0.0.1")
    port = os.environ.get("CODEACT_PORT", "8000")
    procs = [("web", [_bin("daphne"), "-b", host, "-p", port, "codeact_web.asgi:application"])]
    workers = settings.CODEACT_WORKER_PROCESSES
    threads = _threads_that_fit(workers, settings.CODEACT_WORKER_CONCURRENCY)
    for n in range(1, workers + 1):
        name = "worker" if workers == 1 else f"worker{n}"
        procs.append((name, [
            _bin("celery"), "-A", "codeact_web", "worker", "-P", "threads",
            "-c", str(threads), "-n", f"{name}@%h",
            "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "--without-gossip", "--without-mingle",
            "-l", "INFO",
        ]))  # fmt: skip
    procs.append((
        "beat",
        [
            _bin("celery"), "-A", "codeact_web", "beat", "-l", "INFO",
            "-s", str(settings.VAR_DIR / "celerybeat-schedule"),
        ],
    ))  # fmt: skip
    if settings.CODEACT_EGRESS == "proxy":
        # Squid for sandboxes' web access, with the network and firewall it needs.
        procs.append(("egress", [sys.executable, str(ROOT / "manage.py"), "egress", "run"]))
    if settings.CODEACT_BUNDLED_MODEL:
        from codeact_web.bundled_model import server_command

        procs.append(("model", server_command(settings.CODEACT_BUNDLED_MODEL_PORT)))
    return procs


def _threads_that_fit(workers: int, wanted: int) -> int:
    """Each worker's connection pool holds one connection per thread (a turn keeps
    its own): fewer threads, when PostgreSQL has too few slots for the pools of
    all the processes started here. Set CODEACT_DB_POOL_SIZE to size pools yourself."""
    if os.environ.get("CODEACT_DB_POOL_SIZE"):
        return wanted
    from django.db import connection

    from codeact_web.database import fitting_concurrency

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') - 1"
        )
        max_connections, reserved, in_use = cursor.fetchone()
    connection.close()
    threads = fitting_concurrency(wanted, workers, max_connections, reserved, in_use)
    if threads < wanted:
        print(
            f"PostgreSQL allows {max_connections} connections ({in_use} in use elsewhere): "
            f"each of the {workers} workers runs {threads} turns at once instead of {wanted}, "
            "so every process's connection pool fits. Raise max_connections (or lower "
            "CODEACT_WORKER_PROCESSES) for more.",
            flush=True,
        )
    # The workers size their pools from this (settings: threads + 4 connections).
    os.environ["CODEACT_WORKER_CONCURRENCY"] = str(threads)
    return threads


def _pump(name: str, colour: str, stream: object, width: int) -> None:
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        line = raw.decode(errors="replace").rstrip()
        with _print_lock:
            print(f"{colour}{name:<{width}} |{RESET} {line}", flush=True)


def main() -> int:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "ensure_admin"], check=True, cwd=ROOT)
    procs = commands()
    width = max(len(name) for name, _ in procs)
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    for index, (name, argv) in enumerate(procs):
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        running.append((name, proc))
        colour = COLOURS[index % len(COLOURS)]
        threading.Thread(target=_pump, args=(name, colour, proc.stdout, width), daemon=True).start()
    host = os.environ.get("CODEACT_HOST", "127.0.0.1")
    print(
        f"CodeAct Web: http://{host}:{os.environ.get('CODEACT_PORT', '8000')}/  (Ctrl-C stops)",
        flush=True,
    )

    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    exit_code = 0
    while not stopping.is_set():
        for name, proc in running:
            if proc.poll() is not None:
                print(
                    f"{name} exited with status {proc.returncode}; stopping everything", flush=True
                )
                exit_code = 1
                stopping.set()
                break
        stopping.wait(0.5)
    _stop_all(running)
    _stop_sandboxes()
    return exit_code


def _stop_sandboxes() -> None:
    """The sandboxes this run started go with it: nothing is left holding memory
    with no beat to reap it. Files are in PostgreSQL; the next start restores them
    into a new sandbox when a conversation runs code again."""
    print("stopping this deployment's sandboxes", flush=True)
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "sandboxes", "--all"], cwd=ROOT, check=False
    )


def _stop_all(running: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, proc in running:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for _, proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
