"""Squid's helpers against the real Redis: the log daemon keeps each line for the
worker and counts bytes; the ACL helper answers over-rate and over-budget, and
refuses when Redis is gone."""

from __future__ import annotations

import io
import uuid

import pytest
import redis

from chat.worker.egress import collect, reset_address
from sandbox import egress_helper
from sandbox.egress_helper import Redis, keys, run_check, run_log

URL = "redis://127.0.0.1:6379/0"
ADDRESS = "172.30.0.9"
LINE = (
    "1764547200.123 172.30.0.9 GET site.test 80 200 5000 120 42 - 198.51.100.10 TCP_MISS "
    "http://site.test/a"
)


@pytest.fixture
def prefix(monkeypatch):
    name = f"codeact-helper-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CODEACT_EGRESS_REDIS_URL", URL)
    monkeypatch.setenv("CODEACT_EGRESS_REDIS_PREFIX", name)
    yield name
    client = redis.Redis.from_url(URL)
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)


def test_the_log_daemon_keeps_lines_for_the_worker_and_counts_bytes(prefix, tmp_path):
    log = tmp_path / "access.log"
    run_log(str(log), io.StringIO(f"L{LINE}\nL{LINE}\nF\nLnot a log line\n"))
    assert log.read_text().splitlines()[:2] == [LINE, LINE]
    client = redis.Redis.from_url(URL)
    assert int(client.get(keys(prefix, ADDRESS)["bytes"])) == 2 * 5120
    assert collect(client, prefix, ADDRESS) == [LINE, LINE]
    assert collect(client, prefix, ADDRESS) == []  # taken once
    reset_address(client, prefix, ADDRESS)
    assert client.get(keys(prefix, ADDRESS)["bytes"]) is None


def test_the_acl_helper_answers_over_rate_and_over_budget(prefix):
    out = io.StringIO()
    run_check("rate", 3, io.StringIO(f"{ADDRESS}\n" * 5), out)
    assert out.getvalue().split() == ["ERR", "ERR", "ERR", "OK", "OK"]  # OK: refuse
    out = io.StringIO()
    run_check("budget", 6000, io.StringIO(f"{ADDRESS}\n"), out)
    assert out.getvalue().split() == ["ERR"]
    egress_helper.record(Redis(URL), prefix, LINE)
    egress_helper.record(Redis(URL), prefix, LINE)
    out = io.StringIO()
    run_check("budget", 6000, io.StringIO(f"{ADDRESS}\n172.30.0.10\n"), out)
    assert out.getvalue().split() == ["OK", "ERR"]  # per address


def test_without_redis_every_request_is_refused(prefix, monkeypatch, capsys):
    monkeypatch.setenv("CODEACT_EGRESS_REDIS_URL", "redis://127.0.0.1:1/0")
    out = io.StringIO()
    run_check("rate", 100, io.StringIO(f"{ADDRESS}\n"), out)
    assert out.getvalue().split() == ["OK"]
    assert "refusing" in capsys.readouterr().err


def test_the_small_client_speaks_resp():
    client = Redis(URL)
    key = f"codeact-helper-{uuid.uuid4().hex[:8]}"
    try:
        assert client.run(["SET", key, "v a l"], ["GET", key], ["DEL", key]) == ["OK", b"v a l", 1]
        assert client.run(["GET", key]) == [None]
        with pytest.raises(egress_helper.RedisError):
            client.run(["NOSUCHCOMMAND"])
    finally:
        redis.Redis.from_url(URL).delete(key)
