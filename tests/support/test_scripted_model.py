"""The scripted model server's pacing, which the turn benchmark relies on."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.scripted_model import Script, ScriptedModelServer, _pause


@pytest.mark.parametrize(
    ("script", "index", "now", "expected"),
    [
        # The first token goes out at once, whatever the pace.
        (Script(delay=0.02, on_schedule=True), 0, 100.0, 0.0),
        (Script(delay=0.02), 0, 100.0, 0.0),
        # After the previous one: always the full delay, however late it was.
        (Script(delay=0.02), 5, 100.5, 0.02),
        # On schedule: token 5 is due 0.1 s after the first (written at 100.0).
        (Script(delay=0.02, on_schedule=True), 5, 100.09, 0.01),
        (Script(delay=0.02, on_schedule=True), 5, 100.1, 0.0),
        # Late (the machine was busy): sent at once, and no debt carried over.
        (Script(delay=0.02, on_schedule=True), 5, 100.5, 0.0),
        (Script(delay=0.02, on_schedule=True), 30, 100.5, 0.1),
        # No delay: as fast as it can write.
        (Script(on_schedule=True), 3, 100.0, 0.0),
    ],
)
def test_pause_before_a_token(script: Script, index: int, now: float, expected: float) -> None:
    assert _pause(script, index, 100.0, now) == pytest.approx(expected)


def _stream(server: ScriptedModelServer) -> str:
    request = urllib.request.Request(
        f"{server.url}/chat/completions",
        data=json.dumps({"model": "scripted", "messages": [], "stream": True}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: str = response.read().decode()
    return body


def _paces(server: ScriptedModelServer) -> list[float]:
    with urllib.request.urlopen(f"{server.url}/_paces", timeout=10) as response:
        paces: list[float] = json.load(response)["paces"]
    return paces


@pytest.fixture
def own_server() -> Iterator[ScriptedModelServer]:
    """A server of this test's own: the suite's shared one also serves the workers
    of other tests, whose replies would be counted too."""
    server = ScriptedModelServer().start()
    yield server
    server.stop()


def test_each_streamed_reply_reports_the_rate_it_was_written_at(
    own_server: ScriptedModelServer,
) -> None:
    own_server.push(
        Script(chunks=["a", "b", "c", "d", "e"], delay=0.01, on_schedule=True), Script(text="one")
    )
    body = _stream(own_server)
    assert body.endswith("data: [DONE]\n\n") and '"content": "e"' in body
    _stream(own_server)  # a single token has no rate: nothing is recorded for it

    (pace,) = _paces(own_server)
    # Four gaps of 10 ms: at most 100 tokens a second (the sleeps can only be late).
    assert 0 < pace <= 100.0 * 1.001
    assert _paces(own_server) == []  # taken, not kept
