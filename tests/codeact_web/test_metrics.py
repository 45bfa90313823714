"""/metrics: events every process records in Redis, gauges read at scrape time, and
who may read them (an allow-listed network, or the bearer token)."""

from __future__ import annotations

import logging
import time

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from chat import live
from chat.models import SandboxHost, SandboxRecord
from chat.worker import pool
from codeact_web import metrics
from codeact_web.celery import app as celery_app
from tests import envplugin
from tests.conftest import open_socket
from tests.factories import ConversationFactory
from tests.support.scripted_model import Script

pytestmark = pytest.mark.django_db

type Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
db = database_sync_to_async


def scrape(**request: str) -> Samples:
    """Every sample /metrics shows, read with prometheus_client's own parser."""
    response = Client().get("/metrics", **request)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner)


@pytest.fixture
def remove_sandboxes():
    yield
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")


# --- What is counted -------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
async def test_a_turn_through_the_worker_moves_the_turn_cell_and_latency_metrics(
    worker, model_server, owner, conversation, remove_sandboxes
):
    before = await db(scrape)()
    model_server.push(Script(text="<execute>\nprint(6 * 7)\n</execute>"), Script(text="It is 42."))
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "6 times 7?"})
        finished = await sock.turn_finished(60)
    assert finished["turn"]["status"] == "done"

    # Counted before the turn's end is announced: no waiting needed.
    after = await db(scrape)()
    assert moved(before, after, "codeact_turns_total", status="done") == 1
    assert moved(before, after, "codeact_turn_duration_seconds_count") == 1
    assert moved(before, after, "codeact_turn_duration_seconds_bucket", le="+Inf") == 1
    assert moved(before, after, "codeact_turn_duration_seconds_sum") > 0
    assert moved(before, after, "codeact_time_to_first_token_seconds_count") == 1
    assert moved(before, after, "codeact_cells_total", status="ok") == 1
    assert moved(before, after, "codeact_cell_duration_seconds_count") == 1
    assert value(after, "codeact_sandboxes", state="in_use") >= 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
async def test_a_model_error_is_counted_by_its_code(worker, model_server, owner, conversation):
    before = await db(scrape)()
    model_server.push(Script(status=500))
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Hello?"})
        finished = await sock.turn_finished(30)
    assert finished["turn"]["error_code"] == "model_server_error"

    after = await db(scrape)()
    assert moved(before, after, "codeact_model_errors_total", code="model_server_error") == 1
    assert moved(before, after, "codeact_turns_total", status="failed") == 1
    assert moved(before, after, "codeact_time_to_first_token_seconds_count") == 0


def test_observations_land_in_their_buckets():
    before = scrape()
    metrics.turn_finished("stopped", 3.0)
    metrics.turn_finished("stopped", None)  # stopped while queued: it never ran
    metrics.cell_finished("lost", None)
    metrics.first_token(0.2)
    after = scrape()

    assert moved(before, after, "codeact_turns_total", status="stopped") == 2
    assert moved(before, after, "codeact_turn_duration_seconds_count") == 1
    assert moved(before, after, "codeact_turn_duration_seconds_sum") == pytest.approx(3.0)
    assert moved(before, after, "codeact_turn_duration_seconds_bucket", le="2.0") == 0
    assert moved(before, after, "codeact_turn_duration_seconds_bucket", le="5.0") == 1
    assert moved(before, after, "codeact_turn_duration_seconds_bucket", le="1200.0") == 1
    assert moved(before, after, "codeact_cells_total", status="lost") == 1
    assert moved(before, after, "codeact_cell_duration_seconds_count") == 0
    assert moved(before, after, "codeact_time_to_first_token_seconds_bucket", le="0.1") == 0
    assert moved(before, after, "codeact_time_to_first_token_seconds_bucket", le="0.25") == 1


def test_sandboxes_are_counted_warm_in_use_or_starting(conversation):
    before = scrape()
    pending = SandboxRecord.PENDING
    SandboxRecord.objects.create(container_id="warm-1", state="warm", image="i")
    SandboxRecord.objects.create(container_id=f"{pending}1", state="warm", image="i")
    SandboxRecord.objects.create(
        container_id="claimed-1", state="claimed", conversation=conversation, image="i"
    )
    SandboxRecord.objects.create(container_id=f"{pending}2", state="claimed", image="i")
    SandboxRecord.objects.create(container_id="gone-1", state="removed", image="i")
    after = scrape()

    assert moved(before, after, "codeact_sandboxes", state="warm") == 1
    assert moved(before, after, "codeact_sandboxes", state="in_use") == 1
    assert moved(before, after, "codeact_sandboxes", state="starting") == 2


def test_sandbox_hosts_marked_down_are_counted():
    before = value(scrape(), "codeact_sandbox_hosts_down")
    SandboxHost.objects.create(address="tcp://10.0.0.12:2376", down_since=timezone.now())
    SandboxHost.objects.create(address="tcp://10.0.0.13:2376")
    assert value(scrape(), "codeact_sandbox_hosts_down") == before + 1


def test_queue_depth_counts_every_priority_of_the_celery_queue(settings):
    queue = f"{envplugin.RUN_ID}-metrics"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    assert value(scrape(), "codeact_queue_depth", queue=queue) == 0
    try:
        celery_app.send_task("chat.tasks.sweep_turns", queue=queue)
        celery_app.send_task("chat.tasks.sweep_turns", queue=queue, priority=5)
        assert value(scrape(), "codeact_queue_depth", queue=queue) == 2
    finally:
        client = metrics._broker()
        for key in client.scan_iter(match=f"{settings.CHANNEL_PREFIX}:*{queue}*"):
            client.delete(key)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
async def test_the_websocket_gauge_counts_open_chat_sockets(owner, other_user, conversation):
    gauge = "codeact_websocket_connections"
    before = value(await db(scrape)(), gauge)
    async with open_socket(owner, conversation.id) as sock:
        assert (await sock.receive())["type"] == "hello"
        assert value(await db(scrape)(), gauge) == before + 1
        async with open_socket(other_user, conversation.id) as refused:
            assert not refused.connected
            assert value(await db(scrape)(), gauge) == before + 1
    assert value(await db(scrape)(), gauge) == before


def test_a_dead_web_process_stops_counting_when_its_key_expires():
    gauge = "codeact_websocket_connections"
    before = value(scrape(), gauge)
    live.redis_client().set(metrics._key("websockets:crashed:1:x"), 5, px=300)
    assert value(scrape(), gauge) == before + 5
    time.sleep(0.5)
    assert value(scrape(), gauge) == before


def test_recording_with_redis_unreachable_does_not_raise(settings, caplog):
    live.outage.worked()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    live.redis_client.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="chat.live"):
            metrics.turn_finished("done", 1.0)
            metrics.first_token(0.5)
            metrics.cell_finished("ok", 0.1)
            metrics.model_error("model_timeout")
        # One warning for the outage, not one per event.
        (warning,) = caplog.records
        assert warning.getMessage().startswith("metrics: a done turn not recorded")
        # The scrape still answers, with what does not need that Redis.
        samples = scrape()
        assert ("codeact_sandboxes", (("state", "warm"),)) in samples
        assert not any(name == "codeact_turns_total" for name, _ in samples)
    finally:
        live.redis_client.cache_clear()
        live.outage.worked()


# --- Who may read them -------------------------------------------------------------


def test_an_address_outside_the_allow_list_is_refused_unless_it_has_the_token(settings):
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    settings.CODEACT_METRICS_TOKEN = "s3cret-token"

    refused = Client().get("/metrics", **outside)
    assert refused.status_code == 403
    assert refused["Content-Type"].startswith("text/plain")
    assert b"Forbidden" in refused.content
    assert (
        Client().get("/metrics", **outside, HTTP_AUTHORIZATION="Bearer s3cret-token").status_code
        == 200
    )
    for wrong in ("Bearer s3cret", "Bearer s3cret-token2", "Basic s3cret-token", "s3cret-token"):
        assert Client().get("/metrics", **outside, HTTP_AUTHORIZATION=wrong).status_code == 403

    settings.CODEACT_METRICS_TOKEN = ""  # no token configured: an empty one is no key
    assert Client().get("/metrics", **outside, HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_allowed_networks_need_no_token(settings):
    assert Client().get("/metrics").status_code == 200  # 127.0.0.1, allowed by default
    assert Client().get("/metrics", REMOTE_ADDR="::1").status_code == 200
    settings.CODEACT_METRICS_ALLOW = ["10.1.0.0/16"]
    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="::ffff:10.1.2.3").status_code == 200


def test_a_signed_in_user_outside_the_allow_list_is_refused_not_sent_to_log_in(settings, staff):
    client = Client()
    client.force_login(staff)
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("remote", "forwarded", "status"),
    [
        ("10.9.0.5", "192.0.2.7", 200),  # an allowed client through the trusted proxy
        ("10.9.0.5", "198.51.100.1", 403),  # an outside client through it
        ("198.51.100.1", "192.0.2.7", 403),  # not a proxy: its header is not believed
    ],
)
def test_behind_a_trusted_proxy_the_forwarded_client_is_checked(
    settings, remote, forwarded, status
):
    settings.CODEACT_TRUSTED_PROXIES = ["10.9.0.0/16"]
    settings.CODEACT_METRICS_ALLOW = ["192.0.2.0/24"]
    response = Client().get("/metrics", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code == status


def test_a_proxy_on_localhost_does_not_let_its_clients_in(settings):
    """The documented production setup: the proxy is 127.0.0.1, which the default
    allow-list admits; the clients it forwards are not."""
    settings.CODEACT_TRUSTED_PROXIES = ["127.0.0.1"]
    response = Client().get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 403
