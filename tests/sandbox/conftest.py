"""Real sandboxes on every backend: Docker under runc and, when installed, gVisor
(runsc); and Kubernetes pods through the emulated API server
(tests/support/kube_api.py), whose pods are real containers on the same engine,
under runc (test_kubernetes checks that the gvisor runtime class gives runsc).
One Kubernetes variant only, to keep the suite's time in check.

CODEACT_TEST_K8S=real runs the suites against the cluster CODEACT_TEST_KUBECONFIG
(or KUBECONFIG) points at instead, Kubernetes only (`make test-k8s`); its
namespace is CODEACT_TEST_K8S_NAMESPACE, its runtime class
CODEACT_TEST_K8S_RUNTIME_CLASS and the image CODEACT_TEST_K8S_IMAGE (one the
cluster can pull).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.api import Limits
from sandbox.bridged import BridgedSandbox
from sandbox.docker_backend import DockerSandbox, docker_client
from sandbox.image_tag import image_tag
from sandbox.kubernetes_backend import KubernetesBackend, load_api_client
from tests.support.kube_api import (  # noqa: F401  (fixtures)
    KubeTarget,
    kube_emulator,
    kube_target,
    real_cluster_wanted,
)

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
Sandbox = DockerSandbox | BridgedSandbox


def _runtimes() -> list[str]:
    if real_cluster_wanted():
        return []
    client = docker_client()
    available = client.info().get("Runtimes", {})
    return ["runc"] + (["runsc"] if "runsc" in available else [])


RUNTIMES = _runtimes()
DOCKER_BACKENDS = [f"docker-{runtime}" for runtime in RUNTIMES]
BACKENDS = [*DOCKER_BACKENDS, "kubernetes"]


@dataclass
class SandboxBackend:
    """One way the suite runs sandboxes, with what the tests ask of it."""

    name: str
    kind: str  # "docker" or "kubernetes"
    runtime: str  # the OCI runtime underneath: runc, runsc ("" on a real cluster: unknown)
    docker: Any = None  # the engine (None on a real cluster)
    kube: KubernetesBackend | None = None
    target: KubeTarget | None = None

    @property
    def image(self) -> str:
        if self.kind == "kubernetes" and self.target and self.target.emulator is None:
            return os.environ.get("CODEACT_TEST_K8S_IMAGE", image_tag())
        return image_tag()

    def make(self, limits: Limits = TEST_LIMITS, **labels: str) -> Any:
        """A sandbox whose kernel is up: a cold start under gVisor on a busy machine can
        take longer than the tests' 4 s cell limit, which would then time out first."""
        tags = {"codeact.conversation": labels.get("conversation", "test"), "codeact.test": "1"}
        box: Any
        if self.kube is not None:
            box = self.kube.start(self.image, limits, tags)
        else:
            runtime = None if self.runtime == "runc" else self.runtime
            box = DockerSandbox(self.docker, self.image, limits, tags, runtime=runtime)
        if not box.warm.wait(90):
            box.close()
            raise AssertionError("the sandbox's kernel did not start within 90 s")
        return box

    def engine_ok(self) -> bool:
        if self.kube is not None and not self.kube.answers():
            return False
        return self.docker is None or bool(self.docker.ping())

    def container_id(self, box: Any) -> str:
        """The Docker container behind a sandbox ("" when there is none to see)."""
        if self.kind == "docker":
            return str(box.id)
        if self.target is not None and self.target.emulator is not None:
            return self.target.emulator.container_of(self.target.namespace, box.id)
        return ""

    def gone(self, box_id: str, within: float) -> bool:
        """Whether the sandbox is removed within that many seconds (in the background)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.kube is not None:
                if self.kube.read_pod(box_id) is None:
                    return True
            elif not self.docker.containers.list(all=True, filters={"id": box_id}):
                return True
            time.sleep(0.2)
        return False


@pytest.fixture(scope="session")
def client() -> Any:
    if real_cluster_wanted():
        pytest.skip("CODEACT_TEST_K8S=real: no Docker engine is used")
    return docker_client()


@pytest.fixture(scope="module", params=[] if real_cluster_wanted() else DOCKER_BACKENDS)
def docker_backend(request: pytest.FixtureRequest, client: Any) -> SandboxBackend:
    """Docker only: for tests of what only Docker has (its HostConfig, networks)."""
    name = str(request.param)
    return SandboxBackend(name, "docker", name.removeprefix("docker-"), docker=client)


@pytest.fixture(scope="module", params=["kubernetes"] if real_cluster_wanted() else BACKENDS)
def backend(request: pytest.FixtureRequest) -> SandboxBackend:
    name = str(request.param)
    if name.startswith("docker-"):
        docker = request.getfixturevalue("client")
        return SandboxBackend(name, "docker", name.removeprefix("docker-"), docker=docker)
    return kubernetes_backend(request.getfixturevalue("kube_target"))


def kubernetes_backend(target: KubeTarget) -> SandboxBackend:
    kube = KubernetesBackend(
        load_api_client(target.kubeconfig), target.namespace, runtime_class=target.runtime_class
    )
    docker = docker_client() if target.emulator is not None else None
    return SandboxBackend("kubernetes", "kubernetes", target.docker_runtime, docker, kube, target)


@pytest.fixture(scope="module")
def runtime(backend: SandboxBackend) -> str:
    """The OCI runtime under the backend: runc, runsc ("" on a real cluster)."""
    return backend.runtime


def make_sandbox(backend: SandboxBackend, limits: Limits = TEST_LIMITS, **labels: str) -> Any:
    return backend.make(limits, **labels)


@pytest.fixture(scope="module")
def neighbour(backend: SandboxBackend) -> Iterator[Any]:
    """A second sandbox that must stay healthy whatever its neighbour does."""
    sandbox = make_sandbox(backend, conversation="neighbour")
    sandbox.execute("canary = 'still here'")
    yield sandbox
    sandbox.close()


def docker_only(test: Any) -> Any:
    """A test of what only Docker has (its HostConfig, its log driver): skipped on the
    other backends before their sandbox is made."""
    test.docker_only = True
    return test


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, backend: SandboxBackend) -> Iterator[Any]:
    if getattr(request.function, "docker_only", False) and backend.kind != "docker":
        pytest.skip("Docker only")
    box = make_sandbox(backend)
    yield box
    box.close()


def host_port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_unharmed(backend: SandboxBackend, neighbour: Any) -> None:
    """The neighbour sandbox, the engine (and API server) and the host's services are fine."""
    result = neighbour.execute("print(canary)", timeout=15)
    assert result.status == "ok", result
    assert result.outputs[0]["text"] == "still here\n"
    assert result.duration < 5, f"the neighbour took {result.duration:.1f}s"
    assert backend.engine_ok()
    if backend.docker is not None:  # the sandboxes run on this machine
        assert host_port_open(5432) and host_port_open(6379)


def recover(box: Any) -> None:
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
