"""The Kubernetes backend: the pod it asks for, the attach websocket, re-attaching
after an API server restart, listing and removal, and the errors a turn reports.

The integration tests run against the EMULATED API server of tests/support/kube_api.py
(pods are real sandbox containers on the local engine), or a real cluster with
CODEACT_TEST_K8S=real; the tests that restart the server, deny calls or count
requests need the emulator and are skipped on a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from sandbox.api import Limits, SandboxError
from sandbox.backend import Backend, StartedSandbox
from sandbox.kubernetes_backend import (
    KEY_ANNOTATION,
    LABEL,
    V4,
    V5,
    WEB_LABEL,
    KubernetesBackend,
    load_api_client,
    pod_manifest,
    proxy_environment,
    rlimits,
)
from tests.sandbox.conftest import (
    TEST_LIMITS,
    SandboxBackend,
    kubernetes_backend,
    text_of,
)
from tests.support.kube_api import EmulatedKubeAPI, KubeTarget

MiB = 1 << 20


# --- the pod spec (no cluster needed) ------------------------------------------------


def manifest(**kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": "codeact-sbx-0123456789ab",
        "image": "codeact-sandbox:tag",
        "limits": Limits(),
        "labels": {"codeact.conversation": "42"},
        "key": "k" * 64,
    }
    options.update(kwargs)
    return pod_manifest(**options)


def test_the_pod_is_hardened():
    limits = Limits(memory_bytes=768 * MiB, cpus=1.5, tmp_bytes=64 * MiB, workspace_bytes=96 * MiB)
    pod = manifest(limits=limits, runtime_class="gvisor")
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert not spec["hostNetwork"] and not spec["hostPID"] and not spec["hostIPC"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True and security["privileged"] is False
    assert container["stdin"] is True and container["stdinOnce"] is False
    assert container["tty"] is False
    assert "env" not in container and "envFrom" not in container
    assert "ports" not in container
    for kind in ("limits", "requests"):
        assert container["resources"][kind] == {
            "cpu": "1500m",
            "memory": str(768 * MiB),
            "ephemeral-storage": str(limits.fsize_bytes),
        }
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": str(64 * MiB)}
    assert volumes["workspace"]["emptyDir"] == {"medium": "Memory", "sizeLimit": str(96 * MiB)}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/workspace": "workspace"}
    args = container["args"]
    assert args[args.index("--preload") + 1] == "numpy,pandas,matplotlib"
    assert args[args.index("--rlimits") + 1] == rlimits(limits)
    assert rlimits(limits) == f"nofile=1024,fsize={512 * MiB},core=0,nproc=256"
    assert args[args.index("--inodes") + 1] == "50000"
    meta = pod["metadata"]
    assert meta["labels"] == {"codeact.conversation": "42", LABEL: "1"}
    assert meta["annotations"] == {KEY_ANNOTATION: "k" * 64}


def test_no_runtime_class_unless_asked():
    assert "runtimeClassName" not in manifest()["spec"]


def test_web_access_adds_the_proxy_variables_and_the_web_label():
    env = proxy_environment("http://egress-proxy.codeact.svc:3128")
    pod = manifest(environment=env)
    (container,) = pod["spec"]["containers"]
    assert {e["name"]: e["value"] for e in container["env"]} == env
    assert env["HTTPS_PROXY"] == "http://egress-proxy.codeact.svc:3128"
    assert pod["metadata"]["labels"][WEB_LABEL] == "1"
    assert WEB_LABEL not in manifest()["metadata"]["labels"]


# --- against the (emulated) API server ------------------------------------------------


@pytest.fixture(scope="module")
def kube(kube_target: KubeTarget) -> SandboxBackend:
    return kubernetes_backend(kube_target)


@pytest.fixture
def box(kube: SandboxBackend) -> Iterator[Any]:
    made = kube.make()
    yield made
    made.close()


@pytest.mark.integration
def test_it_implements_the_backend_protocols(kube: SandboxBackend, box: Any):
    backend: Backend = kube.kube  # type: ignore[assignment]
    started: StartedSandbox = box
    assert backend.kind == "kubernetes" and backend.host.startswith(kube.target.namespace + "@")
    assert started.warm.is_set() and started.alive and started.address == ""


@pytest.mark.integration
def test_the_bridge_is_reached_through_attach_under_v5_only(
    kube: SandboxBackend, kube_emulator: EmulatedKubeAPI
):
    before = dict(kube_emulator.requests)
    made = kube.make()
    try:
        assert made.protocol == V5
        result = made.execute("x = 20\nprint('set')\nx + 1")
        assert result.status == "ok" and text_of(result) == "set\n"
        assert result.outputs[-1]["data"]["text/plain"] == "21"
        made.put_file("a.txt", b"through stdin")
        assert made.get_file("a.txt") == b"through stdin"
    finally:
        made.close()
    used = {k: v - before.get(k, 0) for k, v in kube_emulator.requests.items()}
    assert used.get("attach") == 1
    assert not used.get("exec") and not used.get("portforward") and not used.get("proxy")


@pytest.mark.integration
def test_it_falls_back_to_v4_when_the_server_picks_it(
    kube: SandboxBackend, kube_emulator: EmulatedKubeAPI
):
    kube_emulator.protocols = (V4,)
    try:
        made = kube.make()
    finally:
        kube_emulator.protocols = (V5, V4)
    try:
        assert made.protocol == V4
        assert text_of(made.execute("print(6 * 7)")) == "42\n"
    finally:
        made.close()


@pytest.mark.integration
def test_the_bridge_applies_the_limits_a_pod_spec_cannot_express(box: Any):
    result = box.execute(
        "import resource\n"
        "for name in ('NOFILE', 'FSIZE', 'CORE', 'NPROC'):\n"
        "    print(name, *resource.getrlimit(getattr(resource, 'RLIMIT_' + name)))"
    )
    limits = box.limits
    assert text_of(result).splitlines() == [
        f"NOFILE {limits.nofile} {limits.nofile}",
        f"FSIZE {limits.fsize_bytes} {limits.fsize_bytes}",
        "CORE 0 0",
        f"NPROC {limits.pids} {limits.pids}",
    ]


@pytest.mark.integration
def test_a_cell_past_the_inode_cap_is_stopped(kube: SandboxBackend):
    made = kube.make(replace(TEST_LIMITS, inodes=2000, cell_timeout=30))
    try:
        made.execute("kept = 'yes'")
        result = made.execute(
            "import os\nos.makedirs('many', exist_ok=True)\n"
            "for i in range(1_000_000):\n    open(f'many/{i}', 'w').close()"
        )
        assert result.status == "error", result
        error = result.outputs[-1]
        assert error["ename"] == "OSError" and "more than 2000 files" in error["evalue"]
        assert not result.state_lost
        assert text_of(made.execute("print(kept)")) == "yes\n"
    finally:
        made.close()


@pytest.mark.integration
def test_a_lost_attach_stream_comes_back_with_the_kernel(
    kube: SandboxBackend, box: Any, kube_emulator: EmulatedKubeAPI
):
    box.execute("kept = 'set before the restart'")
    kube_emulator.restart(downtime=1.0)
    result = box.execute("print(kept)", timeout=30)
    assert result.status == "ok", result
    assert text_of(result) == "set before the restart\n"
    assert box._conn.reattached >= 1 and box.alive
    # and again, while idle: the stream is replaced before anyone asks
    kube_emulator.restart(downtime=0.2)
    assert text_of(box.execute("print(kept)", timeout=30)) == "set before the restart\n"
    assert not result.state_lost


@pytest.mark.integration
def test_another_process_attaches_with_the_key_from_the_annotation(kube: SandboxBackend, box: Any):
    box.execute("shared = 'from the first process'")
    other = KubernetesBackend(
        load_api_client(kube.target.kubeconfig), kube.target.namespace
    ).attach(box.id, kube.image, TEST_LIMITS)
    try:
        assert text_of(other.execute("print(shared)")) == "from the first process\n"
    finally:
        other.detach()
    assert box.ping()


@pytest.mark.integration
def test_it_lists_by_label_and_removes(kube: SandboxBackend):
    backend = kube.kube
    assert backend is not None
    first = kube.make(conversation="list-a")
    second = kube.make(conversation="list-b")
    try:
        placed = backend.list({"codeact.conversation": "list-a"})
        assert [p.id for p in placed] == [first.id]
        assert placed[0].running and placed[0].status == "Running"
        assert 0 <= placed[0].age_seconds < 300
        both = {p.id for p in backend.list({"codeact.test": "1"})}
        assert {first.id, second.id} <= both
        backend.remove(first.id)
        backend.remove(first.id)  # one already gone is fine
        assert backend.list({"codeact.conversation": "list-a"}) == []
        assert kube.gone(first.id, within=10)
        with pytest.raises(SandboxError):
            backend.attach(first.id, kube.image, TEST_LIMITS)
    finally:
        first.close()
        second.close()
    assert backend.answers()


@pytest.mark.integration
def test_a_forbidden_call_says_what_the_service_account_may_not_do(
    kube: SandboxBackend, kube_emulator: EmulatedKubeAPI
):
    assert kube.kube is not None
    kube_emulator.deny("create", "pods")
    with pytest.raises(SandboxError) as refused:
        kube.make()
    assert refused.value.permanent
    assert "service account may not create pods" in refused.value.message
    assert "cannot create" in refused.value.message
    kube_emulator.allow_all()
    kube_emulator.deny("create", "pods/attach")
    with pytest.raises(SandboxError) as refused:
        kube.make()
    assert refused.value.permanent
    assert "may not attach" in refused.value.message
    kube_emulator.allow_all()
    assert kube.kube.list({"codeact.conversation": "test"}) == []  # the pod was removed
    kube_emulator.deny("list", "pods")
    with pytest.raises(SandboxError, match="may not list pods") as refused:
        kube.kube.list({})
    assert refused.value.permanent


@pytest.mark.integration
def test_a_pod_that_cannot_start_gives_its_reason(kube: SandboxBackend):
    backend = kube.kube
    assert backend is not None
    with pytest.raises(SandboxError) as failed:
        backend.start("codeact-sandbox:no-such-tag", TEST_LIMITS, {"codeact.test": "1"})
    assert "failed to start" in failed.value.message
    assert "ErrImagePull" in failed.value.message or "ImagePullBackOff" in failed.value.message
    assert not failed.value.permanent
    assert backend.list({"codeact.test": "1", "codeact.conversation": "test"}) == []


@pytest.mark.integration
def test_what_the_api_server_refuses_is_permanent(
    kube: SandboxBackend, kube_emulator: EmulatedKubeAPI
):
    assert kube.kube is not None and kube.target is not None
    unknown_class = KubernetesBackend(
        kube.kube.api_client, kube.target.namespace, runtime_class="no-such-class"
    )
    with pytest.raises(SandboxError, match='RuntimeClass "no-such-class" not found') as refused:
        unknown_class.start(kube.image, TEST_LIMITS, {"codeact.test": "1"})
    assert refused.value.permanent
    with pytest.raises(SandboxError, match="422") as invalid:
        kube.kube.start("", TEST_LIMITS, {"codeact.test": "1"})
    assert invalid.value.permanent and "image: Required value" in invalid.value.message


@pytest.mark.integration
def test_a_server_that_does_not_answer_is_not_permanent(tmp_path):
    from tests.support.kube_api import EmulatedKubeAPI as Server

    config = Server(None).write_kubeconfig(tmp_path / "config", "nowhere")  # port 0: closed
    backend = KubernetesBackend(load_api_client(str(config)), "nowhere")
    assert not backend.answers()
    with pytest.raises(SandboxError) as failed:
        backend.list({})
    assert not failed.value.permanent


@pytest.mark.integration
def test_the_runtime_class_picks_the_nodes_runtime(kube_emulator: EmulatedKubeAPI, kube: Any):
    """The suites' pods run under runc (speed); a pod of the gvisor class runs under
    runsc, as a node's containerd maps the class to its handler."""
    if kube_emulator.runtimes.get("gvisor") != "runsc":
        pytest.skip("gVisor (runsc) is not registered with this Docker engine")
    gvisor = KubernetesBackend(kube.kube.api_client, kube.target.namespace, runtime_class="gvisor")
    box = gvisor.start(kube.image, TEST_LIMITS, {"codeact.test": "1"})
    try:
        assert box.runtime == "gvisor"
        container = kube_emulator.container_of(kube.target.namespace, box.id)
        inspected = kube.docker.api.inspect_container(container)
        assert inspected["HostConfig"]["Runtime"] == "runsc"
        assert box.warm.wait(90)
        result = box.execute("import platform\nprint(platform.release())")
        assert result.status == "ok", result
    finally:
        box.close()
