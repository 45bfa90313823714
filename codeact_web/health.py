"""Liveness and readiness: /health/live answers while the process does; /health/ready
says whether a turn could run now (django-health-check's view and format negotiation).

The web process has no Docker socket and never talks to the model, so the Docker
engine and the model endpoints are judged from reports the workers leave in Redis
(chat/worker/probes.py): each worker process probes its engine and every configured
model endpoint every CODEACT_HEALTH_INTERVAL seconds and writes the outcome under a
key that expires after three intervals. Readiness asks that at least one worker's
report is that fresh and says its engine (and, separately, its model endpoints)
answered. Answers never carry an address, a password or a key.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import json
from collections.abc import Iterable
from typing import Any, ClassVar, TypedDict

import psycopg
import redis.asyncio
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from health_check.base import HealthCheck, HealthCheckResult
from health_check.contrib.redis import Redis as RedisCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView


class WorkerReport(TypedDict):
    """What one worker process found: "" where a dependency answered, else why not."""

    docker: str
    models: dict[str, str]  # model key -> "" or why its endpoint failed


def probe_timeout() -> float:
    return float(settings.CODEACT_HEALTH_TIMEOUT)


def report_ttl() -> float:
    """A report is fresh for three probe intervals: one late or lost probe is no outage."""
    return 3 * float(settings.CODEACT_HEALTH_INTERVAL)


def workers_key() -> str:
    return f"{settings.CHANNEL_PREFIX}:health:workers"


def report_key(worker: str) -> str:
    return f"{settings.CHANNEL_PREFIX}:health:worker:{worker}"


def _redis() -> redis.asyncio.Redis:
    """A client made at call time, so it follows REDIS_URL as it is now."""
    timeout = probe_timeout()
    return redis.asyncio.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        decode_responses=True,
    )


class _Named:
    """Checks are named in answers (and OpenMetrics labels) by `name` alone: the
    library's defaults would show their fields (a Redis host, a database alias)."""

    name: ClassVar[str]

    def __repr__(self) -> str:
        return self.name

    @property
    def labels(self) -> dict[str, str]:
        return {"check": self.name}


@dataclasses.dataclass(repr=False)
class PostgreSQL(_Named, HealthCheck):  # type: ignore[misc]
    """SELECT 1 over a new connection that gives up after CODEACT_HEALTH_TIMEOUT: the
    app's pool would wait CODEACT_DB_POOL_TIMEOUT, and a busy pool is not an outage."""

    name = "PostgreSQL"

    def run(self) -> None:
        params = connections["default"].get_connection_params()
        try:
            with psycopg.connect(
                **params, connect_timeout=max(2, round(probe_timeout())), autocommit=True
            ) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            # psycopg's text names the host and port; its first words say what failed.
            reason = str(exc).split(":")[0]
            raise ServiceUnavailable(f"PostgreSQL does not answer ({reason})") from exc


@dataclasses.dataclass(repr=False)
class Redis(_Named, RedisCheck):  # type: ignore[misc]
    """PING on REDIS_URL (broker and channel layer), read when the check runs."""

    name = "Redis"
    client_factory: Any = dataclasses.field(default=_redis, repr=False)


async def fresh_reports() -> dict[str, WorkerReport]:
    """The reports of the workers that probed within the last three intervals; the
    names of the others are dropped from the set of workers."""
    client = _redis()
    try:
        names = sorted(str(name) for name in await client.smembers(workers_key()))
        values = await client.mget([report_key(name) for name in names]) if names else []
        if gone := [name for name, value in zip(names, values, strict=True) if value is None]:
            await client.srem(workers_key(), *gone)
    except redis.RedisError as exc:
        raise ServiceUnavailable("the workers' reports cannot be read from Redis") from exc
    finally:
        await client.aclose()
    return {
        name: json.loads(value)
        for name, value in zip(names, values, strict=True)
        if value is not None
    }


@dataclasses.dataclass(repr=False)
class _FromWorkers(_Named, HealthCheck):  # type: ignore[misc]
    """Passes when a fresh report from at least one worker says its part answered."""

    @abc.abstractmethod
    def problem(self, report: WorkerReport) -> str:
        """Why this worker's part failed; "" when it answered."""

    async def run(self) -> None:
        reports = await fresh_reports()
        if not reports:
            raise ServiceUnavailable(f"no worker has reported in {report_ttl():g} s")
        problems = [
            f"{worker}: {problem}"
            for worker, report in reports.items()
            if (problem := self.problem(report))
        ]
        if len(problems) == len(reports):  # a few say enough, and keep the answer small
            raise ServiceUnavailable("; ".join(problems[:3]))


@dataclasses.dataclass(repr=False)
class DockerEngine(_FromWorkers):
    name = "Docker engine"

    def problem(self, report: WorkerReport) -> str:
        return report["docker"]


@dataclasses.dataclass(repr=False)
class ModelEndpoints(_FromWorkers):
    name = "Model endpoints"

    def problem(self, report: WorkerReport) -> str:
        return "; ".join(problem for problem in report["models"].values() if problem)


class ReadinessView(HealthCheckView):  # type: ignore[misc]
    """200 when a turn could run now, else 503 naming what failed. JSON unless the
    client asks for HTML (a browser) or another of the library's formats."""

    checks = (PostgreSQL, Redis, DockerEngine, ModelEndpoints)

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = await super().get(request, *args, **kwargs)
        if response.status_code == 500:  # the library's "a check failed"
            response.status_code = 503  # not ready; nothing broke in this process
        return response

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        """The library would answer `*/*` (curl, probes) with its HTML page: they get
        JSON, and the page goes to a client that asks for HTML."""
        if "html" not in self.request.headers.get("accept", ""):
            response: HttpResponse = self.render_to_response_json(kwargs.get("status", 200))
        else:
            response = super().render_to_response(context, **kwargs)
        return response


@never_cache
async def live(request: HttpRequest) -> HttpResponse:
    """The process answers; nothing it depends on is asked (a restart would not help)."""
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


async def run_checks(checks: Iterable[HealthCheck]) -> list[HealthCheckResult]:
    """Run checks at once, as the view does (for `manage.py health`)."""
    return list(await asyncio.gather(*(check.get_result() for check in checks)))


def web_checks() -> list[HealthCheck]:
    return [PostgreSQL(), Redis()]
