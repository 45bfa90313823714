"""Liveness and readiness: /health/live answers while the process does; /health/ready
is 200 only when PostgreSQL, Redis and, by a worker's fresh report, the Docker engine
and the model endpoints answer, and otherwise says which did not."""

from __future__ import annotations

import time

import pytest

from chat.worker import probes
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db

ALL_GOOD = {"PostgreSQL": "OK", "Redis": "OK", "Docker engine": "OK", "Model endpoints": "OK"}


def readiness(client, **headers):
    response = client.get("/health/ready", **headers)
    return response.status_code, response.json()


def test_it_answers_live_without_login_or_any_dependency(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]


def test_it_is_ready_when_a_worker_reported_that_all_answer(client, health_settings):
    probes.publish(probes.probe(), worker="worker@a")
    assert readiness(client) == (200, ALL_GOOD)


@pytest.mark.parametrize(
    ("models_status", "expected"),
    [
        (500, "the model endpoint 'default' did not answer (HTTP 500)"),
        (401, "the model endpoint 'default' refused the API key (HTTP 401)"),
        (None, "the model endpoint 'default' does not answer (cannot connect)"),
    ],
)
def test_it_is_not_ready_when_the_model_endpoint_fails(
    client, health_settings, model_server, models_status, expected
):
    if models_status is None:
        model_server.pause()
    else:
        model_server.models_status = models_status
    probes.publish(probes.probe(), worker="worker@a")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == ALL_GOOD | {"Model endpoints": f"Unavailable: worker@a: {expected}"}
    assert b"sk-never-shown" not in response.content
    assert str(model_server.port).encode() not in response.content


def test_it_is_not_ready_when_a_worker_reported_that_docker_does_not_answer(
    client, health_settings
):
    health_settings.CODEACT_DOCKER_URL = f"tcp://127.0.0.1:{free_port()}"
    probes.publish(probes.probe(), worker="worker@a")
    assert readiness(client) == (
        503,
        ALL_GOOD | {"Docker engine": "Unavailable: worker@a: the Docker engine does not answer"},
    )


def test_it_is_ready_while_one_worker_of_several_answers(client, health_settings):
    probes.publish({"docker": "the Docker engine does not answer", "models": {}}, "worker@a")
    probes.publish(probes.probe(), worker="worker@b")
    assert readiness(client) == (200, ALL_GOOD)


def test_it_is_not_ready_when_no_worker_reported(client, health_settings):
    nobody = "Unavailable: no worker has reported in 45 s"
    assert readiness(client) == (
        503,
        ALL_GOOD | {"Docker engine": nobody, "Model endpoints": nobody},
    )


def test_it_is_not_ready_once_the_last_report_is_three_intervals_old(client, health_settings):
    health_settings.CODEACT_HEALTH_INTERVAL = 0.2
    probes.publish(probes.probe(), worker="worker@a")
    assert readiness(client)[0] == 200
    time.sleep(0.7)
    status, answer = readiness(client)
    assert status == 503
    assert answer["Docker engine"] == "Unavailable: no worker has reported in 0.6 s"


def test_it_is_not_ready_when_redis_does_not_answer(client, health_settings):
    probes.publish(probes.probe(), worker="worker@a")
    health_settings.REDIS_URL = f"redis://:redis-secret@127.0.0.1:{free_port()}/0"
    response = client.get("/health/ready")
    assert response.status_code == 503
    unread = "Unavailable: the workers' reports cannot be read from Redis"
    assert response.json() == {
        "PostgreSQL": "OK",
        "Redis": "Unavailable: Unable to connect to Redis: Connection Error",
        "Docker engine": unread,
        "Model endpoints": unread,
    }
    assert b"redis-secret" not in response.content


def test_it_answers_json_unless_a_browser_asks_for_the_page(client, health_settings):
    probes.publish(probes.probe(), worker="worker@a")
    for accept in ("*/*", "application/json"):
        assert client.get("/health/ready", HTTP_ACCEPT=accept).json() == ALL_GOOD
    page = client.get("/health/ready", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert page["Content-Type"].startswith("text/html")
    assert b"Docker engine" in page.content
    text = client.get("/health/ready?format=text")
    assert text.content.decode().splitlines() == [f"{k}: {v}" for k, v in ALL_GOOD.items()]


def test_it_does_not_redirect_health_checks_to_https(client, settings, health_settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/accounts/login/").status_code == 301  # everything else is
    assert client.get("/health/live").status_code == 200
    probes.publish(probes.probe(), worker="worker@a")
    assert readiness(client) == (200, ALL_GOOD)
