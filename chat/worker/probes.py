"""What the web's readiness cannot see for itself: whether this worker's sandbox
engine (Docker, or the Kubernetes API server) and the model endpoints answer
(codeact_web/health.py reads the reports).

Each worker process runs one thread that probes both every CODEACT_HEALTH_INTERVAL
seconds and writes a report to Redis. `manage.py health --role worker` runs the
same probes directly, as the worker container's health check.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
from typing import Any

import docker
import httpx2
import requests
from django.conf import settings
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from chat import live
from chat.worker import hosts
from chat.worker.pool import image as sandbox_image
from codeact_web.health import WorkerReport, probe_timeout, report_key, report_ttl, workers_key
from sandbox.api import SandboxError

log = logging.getLogger(__name__)

DOCKER_DOWN = "the Docker engine does not answer"
KUBERNETES_DOWN = "the Kubernetes API server does not answer (or refuses this worker)"


def sandbox_problem() -> str:
    """An empty string when sandboxes can start: on Docker, at least one configured
    engine answers and has the sandbox image; on Kubernetes, the API server answers.
    Else why not."""
    if settings.CODEACT_SANDBOX_BACKEND == "kubernetes":
        try:
            engine = hosts.backend(hosts.addresses()[0])
            return "" if engine.answers() else KUBERNETES_DOWN
        except SandboxError as exc:
            return f"{KUBERNETES_DOWN}: {exc.message}"
    problems = {address: docker_problem(address) for address in hosts.addresses()}
    if "" in problems.values() or len(problems) == 1:
        return min(problems.values(), key=len)
    return "no Docker host can start sandboxes: " + "; ".join(
        f"{hosts.label(address)}: {problem}" for address, problem in problems.items()
    )


def docker_problem(address: str = "") -> str:
    """An empty string when the engine answers a ping in time and has the sandbox
    image (without it no code could run), else why not."""
    try:
        client = hosts.docker_engine_client(address, timeout=probe_timeout())
    except (docker.errors.DockerException, SandboxError):  # its API version, its TLS files
        return DOCKER_DOWN
    try:
        if not client.ping():
            return DOCKER_DOWN
        client.images.get(sandbox_image())
        return ""
    except docker.errors.ImageNotFound:
        missing = sandbox_image()
        return f"the sandbox image {missing} is not on the Docker engine (make images builds it)"
    except (docker.errors.DockerException, requests.RequestException):
        return DOCKER_DOWN
    finally:
        client.close()


def model_problem(config: dict[str, Any]) -> str:
    """An empty string when the endpoint lists its models, else why not. GET /models costs the
    server nothing; a refused key is a failure (every turn would fail the same way),
    other answers below 500 (a gateway without that route, a rate limit) are not."""
    endpoint = f"the model endpoint {config['key']!r}"
    url = str(config["base_url"]).rstrip("/") + "/models"
    try:
        response = httpx2.get(
            url,
            headers={"Authorization": f"Bearer {config['api_key'] or 'not-needed'}"},
            timeout=probe_timeout(),
        )
    except httpx2.TimeoutException:
        return f"{endpoint} did not answer within {probe_timeout():g} s"
    except (httpx2.HTTPError, httpx2.InvalidURL):
        return f"{endpoint} does not answer (cannot connect)"
    if response.status_code in (401, 403):
        return f"{endpoint} refused the API key (HTTP {response.status_code})"
    if response.status_code >= 500:
        return f"{endpoint} did not answer (HTTP {response.status_code})"
    return ""


def probe() -> WorkerReport:
    return {
        "docker": sandbox_problem(),
        "models": {str(model["key"]): model_problem(model) for model in settings.CODEACT_MODELS},
    }


def worker_name() -> str:
    """The process (worker, worker2...) and its host: one report per worker process."""
    return f"{settings.CODEACT_PROCESS}@{socket.gethostname()}"


def publish(report: WorkerReport, worker: str | None = None) -> None:
    """Write this worker's report, fresh for three probe intervals."""
    name = worker or worker_name()
    pipe = live.redis_client().pipeline(transaction=False)
    pipe.set(report_key(name), json.dumps(report), px=int(report_ttl() * 1000))
    pipe.sadd(workers_key(), name)
    pipe.execute()


def _report_forever() -> None:
    failing = False
    while True:
        try:
            publish(probe())
        except Exception as exc:  # Redis went away: the web will see the report go stale
            if not failing:
                log.warning("could not publish the health report: %r", exc)
            failing = True
        else:
            failing = False
        time.sleep(settings.CODEACT_HEALTH_INTERVAL)


_started = threading.Lock()
_thread: threading.Thread | None = None


def start_reporting() -> None:
    """Start this process's reporting thread, once."""
    global _thread
    with _started:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_report_forever, name="health-probes", daemon=True)
            _thread.start()


@dataclasses.dataclass(repr=False)
class DockerEngine(HealthCheck):  # type: ignore[misc]
    """The worker container's own check of its sandbox engine (`manage.py health
    --role worker`): Docker engines, or the Kubernetes API server."""

    def __repr__(self) -> str:
        if settings.CODEACT_SANDBOX_BACKEND == "kubernetes":
            return "Kubernetes API server"
        return "Docker engine"

    def run(self) -> None:
        if problem := sandbox_problem():
            raise ServiceUnavailable(problem)


@dataclasses.dataclass(repr=False)
class ModelEndpoint(HealthCheck):  # type: ignore[misc]
    config: dict[str, Any] = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        return f"Model endpoint {self.config['key']!r}"

    def run(self) -> None:
        if problem := model_problem(self.config):
            raise ServiceUnavailable(problem)


def worker_checks() -> list[HealthCheck]:
    """What a worker needs beyond PostgreSQL and Redis, asked directly."""
    return [DockerEngine(), *(ModelEndpoint(dict(model)) for model in settings.CODEACT_MODELS)]
