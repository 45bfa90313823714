"""`manage.py health`, the containers' health check: PostgreSQL and Redis for the web,
and also the Docker engine and the model endpoints for a worker, asked directly."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import scripted_endpoint
from tests.support.processes import ROOT, free_port, process_env
from tests.support.silent import silent_port

pytestmark = pytest.mark.django_db


def health(role: str, model_url: str, **env: str) -> tuple[int, list[str], list[str], float]:
    """Exit code, stdout and stderr lines, and seconds taken, as Docker would see them."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", "health", "--role", role],
        cwd=ROOT,
        env=process_env(CODEACT_MODELS=json.dumps([scripted_endpoint(model_url)]), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.monotonic() - started
    return done.returncode, done.stdout.splitlines(), done.stderr.splitlines(), seconds


def test_it_passes_a_worker_whose_engine_and_model_answer(model_server):
    code, out, err, _ = health("worker", model_server.url)
    assert (code, err) == (0, [])
    assert out == ["ok: PostgreSQL, Redis, Docker engine, Model endpoint 'default'"]


def test_it_fails_a_worker_whose_model_endpoint_is_down(model_server):
    model_server.pause()
    code, out, err, _ = health("worker", model_server.url)
    assert (code, out) == (1, [])
    assert err == [
        "Model endpoint 'default': Unavailable: "
        "the model endpoint 'default' does not answer (cannot connect)"
    ]


def test_it_gives_up_on_a_hung_model_within_five_seconds():
    with silent_port() as port:
        code, _, err, seconds = health("worker", f"http://127.0.0.1:{port}/v1")
    assert code == 1
    assert err == [
        "Model endpoint 'default': Unavailable: "
        "the model endpoint 'default' did not answer within 3 s"
    ]
    assert seconds < 5


def test_it_asks_only_postgresql_and_redis_for_the_web(model_server):
    model_server.pause()
    code, out, err, _ = health("web", model_server.url, CODEACT_DOCKER_URL="tcp://127.0.0.1:1")
    assert (code, out, err) == (0, ["ok: PostgreSQL, Redis"], [])


def test_it_fails_the_web_when_redis_does_not_answer(model_server):
    closed = f"redis://:redis-secret@127.0.0.1:{free_port()}/0"
    code, out, err, _ = health("web", model_server.url, REDIS_URL=closed)
    assert (code, out) == (1, [])
    assert err == ["Redis: Unavailable: Unable to connect to Redis: Connection Error"]
