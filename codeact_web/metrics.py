"""Prometheus metrics of the whole deployment, served by any web process at /metrics.

A scrape reaches one web process, while turns and cells run in many worker
processes, so nothing is counted in process memory. Whoever sees an event
(a worker ending a turn, the sweeper interrupting one, a web process stopping
a queued one) adds it to hashes in Redis under the deployment's prefix, in one
pipelined round trip; a histogram is stored as the count of observations in
each bucket plus their sum and count. At scrape time a collector reads those
hashes and adds what is cheaper to look up than to count: sandboxes by state
(PostgreSQL), the Celery queue's length, and the open chat sockets each web
process keeps under a key of its own that expires with the process.

Recording never fails its caller: while Redis is unreachable events are
dropped, with one warning per outage (`chat.live.outage`, shared with the
live text and the broadcasts, which meet the same Redis).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_safe
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from chat import live
from chat.models import SandboxHost, SandboxRecord
from codeact_web.proxy import client_ip, in_networks

log = logging.getLogger(__name__)

type Pipeline = redis.client.Pipeline

# A web process rewrites its count of open sockets this often, with this TTL:
# the count of a process that died leaves the sum within a minute.
SOCKETS_REFRESH_SECONDS = 15.0
SOCKETS_TTL_SECONDS = 60


def _key(name: str) -> str:
    return f"{settings.CHANNEL_PREFIX}:metrics:{name}"


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it: 5.0, 0.25, +Inf."""
    return "+Inf" if bound == math.inf else repr(float(bound))


@dataclass(frozen=True)
class _Counter:
    """A counter with one label, kept in a hash: label value -> count."""

    name: str  # without `_total`: prometheus_client adds it
    help: str
    label: str

    def add(self, pipe: Pipeline, value: str) -> None:
        pipe.hincrby(_key(self.name), value, 1)

    def family(self, stored: dict[bytes, bytes]) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.help, labels=[self.label])
        for value, count in sorted(stored.items()):
            family.add_metric([value.decode()], float(count))
        return family


@dataclass(frozen=True)
class _Histogram:
    """A histogram kept in a hash: the observations that fell in each bucket (by
    its upper bound, not cumulated, so one observation is one increment), plus
    `sum` and `count`. Buckets are cumulated when read, by bound, so changing
    the bounds between releases keeps the counts consistent."""

    name: str
    help: str
    bounds: tuple[float, ...]

    def add(self, pipe: Pipeline, value: float) -> None:
        value = max(0.0, value)
        bound = next((b for b in self.bounds if value <= b), math.inf)
        key = _key(self.name)
        pipe.hincrby(key, _le(bound), 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", value)

    def family(self, stored: dict[bytes, bytes]) -> HistogramMetricFamily:
        fields = {name.decode(): float(value) for name, value in stored.items()}
        count = fields.pop("count", 0.0)
        total = fields.pop("sum", 0.0)
        observed = [(float(bound), n) for bound, n in fields.items()]
        buckets = [(_le(b), sum(n for at, n in observed if at <= b)) for b in self.bounds]
        buckets.append((_le(math.inf), count))
        return HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=total)


TURNS = _Counter(
    "codeact_turns", "Turns that ended, by status: done, failed, stopped, interrupted.", "status"
)
TURN_SECONDS = _Histogram(
    "codeact_turn_duration_seconds",
    "Seconds from a worker starting a turn to its end (turns stopped while queued never start).",
    (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
FIRST_TOKEN_SECONDS = _Histogram(
    "codeact_time_to_first_token_seconds",
    "Seconds from the user's message to the first token of its answer, queue wait included.",
    (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60),
)
CELLS = _Counter(
    "codeact_cells",
    "Code cells that ended, by status: ok, error, timeout, interrupted, died, lost, failed.",
    "status",
)
CELL_SECONDS = _Histogram(
    "codeact_cell_duration_seconds",
    "Seconds a cell's code ran (cells that never ran, or were cut off, are left out).",
    (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
MODEL_ERRORS = _Counter(
    "codeact_model_errors",
    "Turns the model endpoint failed, by error code (model_timeout, model_unreachable, ...).",
    "code",
)
RECORDED: tuple[_Counter | _Histogram, ...] = (
    TURNS,
    TURN_SECONDS,
    FIRST_TOKEN_SECONDS,
    CELLS,
    CELL_SECONDS,
    MODEL_ERRORS,
)


# --- Recording: called wherever the event happens, in any process ------------------


def _record(what: str, fill: Callable[[Pipeline], None]) -> None:
    """Send one event's increments in one round trip; drop them while Redis is away."""
    if live.outage.paused():
        return
    try:
        pipe = live.redis_client().pipeline(transaction=False)
        fill(pipe)
        pipe.execute()
    except redis.RedisError as exc:
        live.outage.failed(f"metrics: {what} not recorded", exc)
    else:
        live.outage.worked()


def _ended(
    what: str, counter: _Counter, histogram: _Histogram, status: str, seconds: float | None
) -> None:
    """A turn or a cell ended with `status`; `seconds` is how long it ran (None: not at all)."""

    def fill(pipe: Pipeline) -> None:
        counter.add(pipe, status)
        if seconds is not None:
            histogram.add(pipe, seconds)

    _record(f"a {status} {what}", fill)


def turn_finished(status: str, seconds: float | None) -> None:
    """A turn ended; `seconds` is how long it ran (None: it never started)."""
    _ended("turn", TURNS, TURN_SECONDS, status, seconds)


def first_token(seconds: float) -> None:
    """The first token of a turn's answer arrived, `seconds` after the user asked."""
    _record("a first token", lambda pipe: FIRST_TOKEN_SECONDS.add(pipe, seconds))


def cell_finished(status: str, seconds: float | None) -> None:
    """A cell ended; `seconds` is how long its code ran (None: it did not run)."""
    _ended("cell", CELLS, CELL_SECONDS, status, seconds)


def model_error(code: str) -> None:
    """The model endpoint failed a turn with this `ModelError` code."""
    _record(f"a {code} model error", lambda pipe: MODEL_ERRORS.add(pipe, code))


class _OpenSockets:
    """This web process's open chat sockets, published to Redis for the gauge.

    Consumers change the count in memory and wake a thread that writes it (so
    the event loop never waits on Redis); the thread also rewrites it every
    SOCKETS_REFRESH_SECONDS, under a key that expires after SOCKETS_TTL_SECONDS,
    so a web process that crashed stops counting soon after.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @property
    def key(self) -> str:
        return _key(f"websockets:{self._process}")

    def opened(self) -> None:
        self._change(1)

    def closed(self) -> None:
        self._change(-1)

    def _change(self, by: int) -> None:
        with self._lock:
            self._open += by
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._keep_published, name="metrics-sockets", daemon=True
                )
                self._thread.start()
        self._changed.set()

    def publish(self) -> None:
        """Write this process's count now (raises RedisError)."""
        live.redis_client().set(self.key, self._open, ex=SOCKETS_TTL_SECONDS)

    def _keep_published(self) -> None:
        while True:
            self._changed.wait(SOCKETS_REFRESH_SECONDS)
            self._changed.clear()
            try:
                self.publish()
            except redis.RedisError as exc:
                live.outage.failed("metrics: open websockets not recorded", exc)


websockets = _OpenSockets()


# --- Reading: the collector behind /metrics ---------------------------------------------


def _recorded() -> list[Metric]:
    pipe = live.redis_client().pipeline(transaction=False)
    for metric in RECORDED:
        pipe.hgetall(_key(metric.name))
    return [metric.family(stored) for metric, stored in zip(RECORDED, pipe.execute(), strict=True)]


def _websocket_connections() -> list[Metric]:
    """The sum of the web processes' counts that have not expired (this one's
    written first, so it is current)."""
    websockets.publish()
    client = live.redis_client()
    keys = list(client.scan_iter(match=_key("websockets:*"), count=1000))
    counts = client.mget(keys) if keys else []
    total = sum(int(count) for count in counts if count is not None)
    return [
        GaugeMetricFamily(
            "codeact_websocket_connections",
            "Chat websockets open, over all web processes.",
            value=total,
        )
    ]


@cache
def _broker() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2
    )


def _queue_depth() -> list[Metric]:
    """Tasks waiting in the Celery queue. Kombu's Redis transport keeps a queue as
    a list per priority level (the plain name holds priority 0), under the
    transport's global key prefix."""
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    name = str(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")) + queue
    pipe = _broker().pipeline(transaction=False)
    for step in PRIORITY_STEPS:
        pipe.llen(f"{name}{Channel.sep}{step}" if step else name)
    family = GaugeMetricFamily(
        "codeact_queue_depth",
        "Tasks waiting in the Celery queue (turns and maintenance), all priorities.",
        labels=["queue"],
    )
    family.add_metric([queue], sum(pipe.execute()))
    return [family]


def _sandboxes() -> GaugeMetricFamily:
    """Live sandboxes from their records: a row whose container id is still the
    reservation's placeholder is starting (a warm one until its libraries are
    imported); the others are warm in the pool or claimed by a conversation."""
    starting = Q(container_id__startswith=SandboxRecord.PENDING)
    counts = SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE).aggregate(
        warm=Count("pk", filter=Q(state=SandboxRecord.State.WARM) & ~starting),
        in_use=Count("pk", filter=Q(state=SandboxRecord.State.CLAIMED) & ~starting),
        starting=Count("pk", filter=starting),
    )
    family = GaugeMetricFamily(
        "codeact_sandboxes",
        "Live sandboxes: warm in the pool, in use by a conversation, or starting.",
        labels=["state"],
    )
    for state, count in counts.items():
        family.add_metric([state], count)
    return family


def _sandbox_hosts() -> GaugeMetricFamily:
    """Sandbox hosts the workers found not answering (chat/worker/hosts.py)."""
    family = GaugeMetricFamily(
        "codeact_sandbox_hosts_down",
        "Sandbox hosts (Docker engines) marked down: no new sandbox goes there.",
    )
    family.add_metric([], SandboxHost.objects.filter(down_since__isnull=False).count())
    return family


class DeploymentCollector(Collector):
    """Everything /metrics shows, read at scrape time. While Redis is unreachable
    its metrics are left out (Prometheus marks them stale) and the rest is served."""

    def collect(self) -> Iterable[Metric]:
        families: list[Metric] = []
        for read in (_recorded, _websocket_connections, _queue_depth):
            try:
                families += read()
            except redis.RedisError as exc:
                log.warning("metrics: %s left out, Redis is unavailable: %r", read.__name__, exc)
        families += [_sandboxes(), _sandbox_hosts()]
        return families


_registry = CollectorRegistry(auto_describe=False)
_registry.register(DeploymentCollector())


# --- The view -----------------------------------------------------------------------


def _from_allowed_network(request: HttpRequest) -> bool:
    """The client (behind CODEACT_TRUSTED_PROXIES) is in CODEACT_METRICS_ALLOW."""
    try:
        ip = ipaddress.ip_address(client_ip(request) or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # an IPv4 client of a dual-stack listener
    return in_networks(ip, settings.CODEACT_METRICS_ALLOW)


def _has_token(request: HttpRequest) -> bool:
    """The request carries `Authorization: Bearer <CODEACT_METRICS_TOKEN>`."""
    token: str = settings.CODEACT_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(token)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    )


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus's text format, for an allowed network or the token; 403 otherwise
    (a scraper follows no login page)."""
    if not (_from_allowed_network(request) or _has_token(request)):
        return HttpResponseForbidden(
            "Forbidden: metrics are served to allowed networks or with the metrics token.\n",
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
