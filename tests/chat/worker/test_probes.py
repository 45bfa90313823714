"""A worker's probes of its Docker engine and the model endpoints, and the reports it
leaves in Redis for the web's readiness check."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from chat import live
from chat.worker import probes
from codeact_web.health import report_key, workers_key
from tests.conftest import scripted_endpoint
from tests.support.processes import free_port, start_worker
from tests.support.silent import silent_port


def test_it_finds_the_docker_engine_and_the_model_answering(health_settings):
    assert probes.probe() == {"docker": "", "models": {"default": ""}}


@pytest.mark.parametrize(
    ("models_status", "expected"),
    [
        (500, "the model endpoint 'default' did not answer (HTTP 500)"),
        (401, "the model endpoint 'default' refused the API key (HTTP 401)"),
        (403, "the model endpoint 'default' refused the API key (HTTP 403)"),
        # A gateway without GET /models, or a rate limit, still answers.
        (404, ""),
        (429, ""),
    ],
)
def test_it_says_what_the_model_endpoint_answered(
    health_settings, model_server, models_status, expected
):
    model_server.models_status = models_status
    assert probes.probe()["models"] == {"default": expected}


def test_it_says_a_model_endpoint_that_is_down_does_not_answer(health_settings, model_server):
    model_server.pause()
    problem = probes.probe()["models"]["default"]
    assert problem == "the model endpoint 'default' does not answer (cannot connect)"


def test_it_gives_up_on_a_model_endpoint_that_hangs(health_settings):
    health_settings.CODEACT_HEALTH_TIMEOUT = 0.5
    with silent_port() as port:
        health_settings.CODEACT_MODELS = [scripted_endpoint(f"http://127.0.0.1:{port}/v1")]
        started = time.monotonic()
        problem = probes.probe()["models"]["default"]
    assert problem == "the model endpoint 'default' did not answer within 0.5 s"
    assert time.monotonic() - started < 2


def test_it_says_the_docker_engine_does_not_answer(health_settings):
    health_settings.CODEACT_DOCKER_URL = f"tcp://127.0.0.1:{free_port()}"
    assert probes.probe() == {
        "docker": "the Docker engine does not answer",
        "models": {"default": ""},
    }


def test_it_says_the_sandbox_image_is_missing(health_settings):
    """A worker whose engine lacks the sandbox image could run no code at all."""
    health_settings.CODEACT_SANDBOX_IMAGE = "codeact-sandbox:not-built-here"
    assert probes.probe()["docker"] == (
        "the sandbox image codeact-sandbox:not-built-here is not on the Docker engine "
        "(make images builds it)"
    )


def test_it_publishes_a_report_fresh_for_three_intervals(health_settings):
    health_settings.CODEACT_HEALTH_INTERVAL = 0.2
    probes.publish(probes.probe(), worker="worker@test")
    client = live.redis_client()
    assert client.smembers(workers_key()) == {b"worker@test"}
    assert json.loads(client.get(report_key("worker@test"))) == {
        "docker": "",
        "models": {"default": ""},
    }
    assert 0 < client.pttl(report_key("worker@test")) <= 600


@pytest.mark.django_db(transaction=True)
def test_it_reports_from_a_started_worker_until_the_worker_stops(health_settings, model_server):
    prefix = health_settings.CHANNEL_PREFIX
    worker = start_worker(
        name="health-worker",
        CODEACT_CHANNEL_PREFIX=prefix,
        CELERY_QUEUE=prefix,
        CODEACT_MODELS=json.dumps(health_settings.CODEACT_MODELS),
        CODEACT_HEALTH_INTERVAL="0.5",
    )
    health_settings.CODEACT_HEALTH_INTERVAL = 0.5  # what the web takes as fresh
    try:
        assert wait_for_readiness(200) == {
            "PostgreSQL": "OK",
            "Redis": "OK",
            "Docker engine": "OK",
            "Model endpoints": "OK",
        }
        workers = live.redis_client().smembers(workers_key())
        assert [name.split(b"@")[0] for name in workers] == [b"health-worker"]
    finally:
        worker.stop()
    gone = wait_for_readiness(503)
    assert gone["Docker engine"] == "Unavailable: no worker has reported in 1.5 s"


def wait_for_readiness(status: int, timeout: float = 20.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        response = Client().get("/health/ready")
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.content
            return response.json()
        time.sleep(0.2)
