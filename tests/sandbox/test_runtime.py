"""Sandboxes run under gVisor wherever the engine has it (sandbox/runtime.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sandbox import runtime as runtimes
from sandbox.runtime import NO_GVISOR, choose_runtime
from tests.sandbox.conftest import RUNTIMES, TEST_LIMITS


class Engine:
    """An engine that lists some runtimes and counts how often it was asked."""

    def __init__(self, names: list[str], url: str) -> None:
        self.names = names
        self.api = type("Api", (), {"base_url": url})()
        self.asked = 0

    def info(self) -> dict[str, Any]:
        self.asked += 1
        return {"Runtimes": {name: {} for name in self.names}}


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch):
    monkeypatch.setattr(runtimes, "_chosen", {})


def test_it_chooses_gvisor_when_the_engine_has_it():
    engine = Engine(["runc", "runsc"], "unix://one")
    assert choose_runtime(engine, "auto").name == "runsc"
    assert choose_runtime(engine, "").warning == ""
    assert engine.asked == 1


def test_it_falls_back_to_runc_with_one_warning(caplog):
    engine = Engine(["runc"], "unix://two")
    with caplog.at_level(logging.WARNING, logger="sandbox.runtime"):
        first = choose_runtime(engine, "auto")
        second = choose_runtime(engine, None)
    assert first.name == second.name == "runc"
    assert first.warning == NO_GVISOR
    assert [r.message for r in caplog.records] == [NO_GVISOR]


def test_it_takes_a_forced_runtime_as_it_is():
    engine = Engine(["runc"], "unix://three")
    assert choose_runtime(engine, "runsc").name == "runsc"
    assert choose_runtime(engine, "RUNC").name == "runc"
    assert engine.asked == 0
    with pytest.raises(ValueError, match="unknown sandbox runtime"):
        choose_runtime(engine, "kata")


@pytest.mark.integration
def test_auto_starts_sandboxes_under_gvisor_on_this_engine(client):
    from sandbox.docker_backend import DockerSandbox
    from sandbox.image_tag import image_tag

    box = DockerSandbox(client, image_tag(), TEST_LIMITS, {"codeact.test": "1"}, runtime="auto")
    try:
        expected = "runsc" if "runsc" in RUNTIMES else "runc"
        assert box.runtime == expected
        assert client.api.inspect_container(box.id)["HostConfig"]["Runtime"] == expected
        assert box.execute("print(1 + 1)").outputs[0]["text"] == "2\n"
    finally:
        box.close()
