"""The chaos tier's harness: the app's own processes with their own queue (so no
other worker of the test run takes their turns), a private PostgreSQL cluster
that a test may restart, the rows a page should show read straight from
PostgreSQL, and process memory read from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import psycopg

from tests.support.processes import ROOT, Process, _bin, free_port, process_env

# --- the app's processes ----------------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class App:
    """Daphne, a Celery worker and (optionally) beat, sharing one environment.

    Each App gets a queue of its own, so a worker another test started in the
    same run never takes its turns (they may live in another database)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    beat: bool = False
    concurrency: int = 8
    port: int = field(default_factory=free_port)
    procs: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = (
            f"{os.environ.get('CELERY_QUEUE', 'codeact')}-{self.name}-{uuid.uuid4().hex[:6]}"
        )
        self.env = process_env() | {"CELERY_QUEUE": self.queue} | self.env

    def start(self) -> App:
        self.start_worker()
        self.start_web()
        if self.beat:
            self.start_beat()
        return self

    def _process(self, role: str, argv: list[str]) -> Process:
        return Process(f"chaos-{self.name}-{role}", argv, self.env | {"CODEACT_PROCESS": role})

    def start_worker(self) -> Process:
        argv = [
            _bin("celery"), "-A", "codeact_web", "worker", "-P", "threads",
            "-c", str(self.concurrency), "-Q", self.queue, "-n", f"{self.queue}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
        ]  # fmt: skip
        proc = self.procs["worker"] = self._process("worker", argv)
        offset = proc.log_path.stat().st_size
        proc.wait_until(lambda: " ready." in proc.log_path.read_text(errors="replace")[offset:])
        return proc

    def start_web(self) -> Process:
        argv = [
            _bin("daphne"), "-b", "127.0.0.1", "-p", str(self.port),
            "codeact_web.asgi:application",
        ]  # fmt: skip
        proc = self.procs["web"] = self._process("web", argv)
        proc.wait_until(lambda: _listening(self.port))
        return proc

    def start_beat(self) -> Process:
        schedule = Path(tempfile.mkdtemp(prefix="chaos-beat-")) / "schedule"
        argv = [_bin("celery"), "-A", "codeact_web", "beat", "-l", "INFO", "-s", str(schedule)]
        self.procs["beat"] = self._process("beat", argv)
        return self.procs["beat"]

    def kill(self, role: str) -> None:
        """SIGKILL, as a crash: nothing gets to shut down cleanly."""
        self.procs[role].kill()
        self.procs[role].stop()  # closes its log

    def pid(self, role: str) -> int:
        return self.procs[role].proc.pid

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- a PostgreSQL cluster of the test's own -------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    return shutil.which(name) or name


class PrivatePostgres:
    """initdb into a temporary directory, trust auth, a free port on 127.0.0.1.

    PostgreSQL refuses to run as root, so under root it runs as `postgres`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (ROOT / "test-artifacts" / "chaos-postgres.log").open("ab")
        self._as: list[str] = []
        if os.geteuid() == 0:
            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "codeact") -> str:
        return f"postgres://codeact@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        subprocess.run(
            [*self._as, _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "codeact",
             "-E", "UTF8", "--no-sync"],
            check=True, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.start()
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE codeact")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*self._as, _pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_for(self.ready, 30, "the private PostgreSQL to accept connections")

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT to the postmaster): every backend is cut off and
        the next start recovers from the WAL, as after a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)
            self.proc.wait(30)

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [_bin("python"), "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# Creates a user, a logged-in session and a conversation in whatever database
# DATABASE_URL names; prints what a client needs.
_NEW_USER = """
import json
from tests.support.sessions import signed_in_user
print(json.dumps(signed_in_user({name!r})))
"""


def new_user(env: dict[str, str], name: str) -> tuple[str, str]:
    """(session cookie, conversation id) of a new user in the database of `env`."""
    out = manage(env, "shell", "-c", _NEW_USER.format(name=name))
    cookie, conversation_id = json.loads(out.strip().splitlines()[-1])
    return cookie, conversation_id


# --- what the database holds ----------------------------------------------------------


def db_view(url: str, conversation_id: str) -> dict[str, dict[int, tuple[Any, ...]]]:
    """A conversation's rows, in the shape of PageClient.view()."""
    queries = {
        "messages": "SELECT id, role, status, content FROM chat_message",
        "turns": "SELECT id, status, error_code FROM chat_turn",
        "executions": "SELECT id, status FROM chat_execution",
        "outputs": "SELECT id, output_type, text FROM chat_output",
        "files": "SELECT id, path, size FROM chat_workspacefile",
    }
    view: dict[str, dict[int, tuple[Any, ...]]] = {}
    with psycopg.connect(url) as conn:
        for name, sql in queries.items():
            rows = conn.execute(f"{sql} WHERE conversation_id = %s", (conversation_id,))
            view[name] = {row[0]: tuple(row[1:]) for row in rows}
    return view


def scalar(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


# --- memory -------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
    return parents


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants (VmRSS), in MiB."""
    parents = _parents()
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total_kib = 0
    for member in tree:
        with contextlib.suppress(OSError), open(f"/proc/{member}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024
