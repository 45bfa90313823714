"""Real Docker sandboxes, under runc and, when installed, gVisor (runsc)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.api import Limits
from sandbox.docker_backend import DockerSandbox, docker_client
from sandbox.image_tag import image_tag

MiB = 1 << 20
# Short time limits keep the suite quick; the other caps are the defaults.
# tmpfs pages count against the memory limit, so they stay well inside it.
TEST_LIMITS = Limits(
    cell_timeout=4.0,
    interrupt_grace=2.0,
    memory_bytes=512 * MiB,
    tmp_bytes=64 * MiB,
    workspace_bytes=128 * MiB,
)


def _runtimes() -> list[str]:
    client = docker_client()
    available = client.info().get("Runtimes", {})
    return ["runc"] + (["runsc"] if "runsc" in available else [])


RUNTIMES = _runtimes()


@pytest.fixture(scope="session")
def client() -> Any:
    return docker_client()


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_sandbox(
    client: Any, runtime: str, limits: Limits = TEST_LIMITS, **labels: str
) -> DockerSandbox:
    """A sandbox whose kernel is up: a cold start under gVisor on a busy machine can take
    longer than the tests' 4 s cell limit, which would then time out before any code ran."""
    box = DockerSandbox(
        client,
        image_tag(),
        limits,
        {"codeact.conversation": labels.get("conversation", "test"), "codeact.test": "1"},
        runtime=None if runtime == "runc" else runtime,
    )
    if not box.warm.wait(90):
        box.close()
        raise AssertionError("the sandbox's kernel did not start within 90 s")
    return box


@pytest.fixture(scope="module")
def neighbour(client: Any, runtime: str) -> Iterator[DockerSandbox]:
    """A second sandbox that must stay healthy whatever its neighbour does."""
    sandbox = make_sandbox(client, runtime, conversation="neighbour")
    sandbox.execute("canary = 'still here'")
    yield sandbox
    sandbox.close()


@pytest.fixture
def sandbox(client: Any, runtime: str) -> Iterator[DockerSandbox]:
    box = make_sandbox(client, runtime)
    yield box
    box.close()


def host_port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_unharmed(client: Any, neighbour: DockerSandbox) -> None:
    """The neighbour sandbox, the Docker engine and the host's services are fine."""
    result = neighbour.execute("print(canary)", timeout=15)
    assert result.status == "ok", result
    assert result.outputs[0]["text"] == "still here\n"
    assert result.duration < 5, f"the neighbour took {result.duration:.1f}s"
    assert client.ping()
    assert host_port_open(5432) and host_port_open(6379)


def recover(box: DockerSandbox) -> None:
    """After a hostile cell the sandbox must be usable again (restarting if it died)."""
    if not box.alive:
        box.restart()
    result = box.execute("print('usable')", timeout=30)
    if result.status != "ok":
        box.restart()
        result = box.execute("print('usable')", timeout=30)
    assert result.status == "ok", result
    assert result.outputs[-1]["text"] == "usable\n"


def text_of(result: Any) -> str:
    return "".join(o.get("text", "") for o in result.outputs if o["output_type"] == "stream")
