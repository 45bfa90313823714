"""Sandbox benchmark: p50/p95 against baselines measured in the same run.

    make bench-sandbox            (BENCH_ITERATIONS=50 by default)

Baselines: a cold `docker run --rm <image> python -c pass`, `docker exec
<container> true`, and a raw echo through an attach stream. Rows, for every
runtime the engine has (runc, and gVisor's runsc when installed), so the cost
of the stronger isolation is visible: cold start to kernel ready, warm claim
(what a conversation waits for when the pool has a sandbox: it hides the
start), a trivial cell, the first stdout chunk, a plot cell, and idle memory
from the cgroup. The targets are checked for the runtime that CODEACT_SANDBOX_RUNTIME
chooses.

Kubernetes rows, marked "emulated": the same cold start, warm claim (through
the pool, with CODEACT_SANDBOX_BACKEND=kubernetes) and trivial cell against the
emulated API server of tests/support/kube_api.py, whose pods are containers on
the same engine: they measure what the backend adds (pod create, watch, the
attach websocket) over the Docker rows beside them, not a real cluster's
scheduling and kubelet.

Web access (when Squid is installed): the cold start of a sandbox on an egress
network (web sandboxes never come from the warm pool), and a small GET from the
sandbox through the egress proxy against the same GET made directly on the test
network (the baseline), with the test "internet" and Squid of
tests/support/egress.py; it adds and removes firewall rules for its own bridge.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codeact_web.settings")
os.environ.setdefault("CODEACT_CHANNEL_PREFIX", f"codeact-bench-{os.getpid()}")

from bench.database import drop_own_database, migrate, use_own_database  # noqa: E402

use_own_database()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from chat.models import Conversation, SandboxRecord  # noqa: E402
from chat.worker import pool  # noqa: E402
from sandbox.docker_backend import DockerSandbox  # noqa: E402
from sandbox.runtime import choose_runtime  # noqa: E402

N = int(os.environ.get("BENCH_ITERATIONS", "50"))
WARMUP = 3
MiB = 1 << 20


def measure(fn: Callable[[], float | None], n: int = N) -> list[float]:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(n):
        value = fn()
        if value is not None:
            samples.append(value)
    return samples


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def docker_run_cold(image: str) -> float:
    return timed(
        lambda: subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--entrypoint",
             "/opt/sandbox/bin/python", image, "-c", "pass"],
            check=True, capture_output=True,
        )
    )  # fmt: skip


def attach_echo_baseline(client: Any, image: str) -> tuple[list[float], Any]:
    container = client.api.create_container(
        image, entrypoint=["cat"], stdin_open=True, detach=True, network_disabled=True,
        host_config=client.api.create_host_config(network_mode="none"),
    )  # fmt: skip
    cid = container["Id"]
    sock = client.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = getattr(sock, "_sock", sock)
    client.api.start(cid)

    def once() -> float:
        started = time.perf_counter()
        raw.sendall(b"ping\n")
        got = b""
        while not got.endswith(b"ping\n"):
            got += raw.recv(4096)
        return time.perf_counter() - started

    return measure(once), (cid, raw)


def main() -> None:
    client = pool._client()
    image = pool.image()
    limits = pool.limits()
    rows: dict[str, list[float]] = {}
    memory: dict[str, list[float]] = {}
    runtimes = ["runc"] + (["runsc"] if "runsc" in (client.info().get("Runtimes") or {}) else [])
    chosen = choose_runtime(client, settings.CODEACT_SANDBOX_RUNTIME).name

    print(f"image {image}, {N} iterations after {WARMUP} warm-up runs", flush=True)
    print(f"runtimes {', '.join(runtimes)}; CODEACT_SANDBOX_RUNTIME chooses {chosen}\n", flush=True)
    rows["baseline: docker run --rm python -c pass"] = measure(lambda: docker_run_cold(image))
    echo, (echo_id, echo_sock) = attach_echo_baseline(client, image)
    rows["baseline: raw attach echo"] = echo
    echo_sock.close()
    client.api.remove_container(echo_id, force=True)
    for runtime in runtimes:
        measure_runtime(client, image, limits, runtime, rows, memory)
    measure_kubernetes(client, image, limits, chosen, rows)
    if shutil.which("squid"):
        measure_web(client, image, limits, runtimes, rows)
    else:
        print("Squid is not installed: no web access rows\n", flush=True)
    report(rows, memory, ",".join(limits.preload) or "nothing", chosen)


GETS = """
import json, os, time, requests
session = requests.Session()
session.trust_env = bool(os.environ.get("HTTP_PROXY"))
samples = []
for _ in range({n}):
    started = time.perf_counter()
    session.get("http://198.51.100.10/api/items", timeout=10).raise_for_status()
    samples.append(time.perf_counter() - started)
print(json.dumps(samples))
"""


def measure_web(
    client: Any, image: str, limits: Any, runtimes: list[str], rows: dict[str, list[float]]
) -> None:
    """Web access rows: a web sandbox's cold start, and a GET through the proxy
    against the same GET made directly on the test network."""
    import json

    from tests.support.egress import egress_proxy, internet_of_tests

    with (
        internet_of_tests(client) as internet,
        egress_proxy(client, requests_per_minute=1_000_000, budget_bytes=1 << 40) as proxy,
    ):
        direct = client.containers.run(
            image,
            entrypoint=["/opt/sandbox/bin/python", "-c", GETS.format(n=N + WARMUP)],
            network=internet.network.name,
            remove=True,
        )
        rows["baseline: GET 200 B, directly on the test network"] = json.loads(direct)[WARMUP:]
        for runtime in runtimes:

            def new(web: Any = proxy.access, rt: str = runtime) -> DockerSandbox:
                box = DockerSandbox(
                    client, image, limits, {"codeact.bench": "1"}, runtime=rt, web=web
                )
                box.warm.wait(60)
                return box

            def cold(new: Callable[[], DockerSandbox] = new) -> float:
                started = time.perf_counter()
                new().close()
                return time.perf_counter() - started

            rows[f"cold start to kernel ready, web access [{runtime}]"] = measure(cold, 10)
            box = new()
            out = box.execute(GETS.format(n=N + WARMUP), timeout=300).outputs[0]["text"]
            rows[f"GET 200 B through the egress proxy [{runtime}]"] = json.loads(out)[WARMUP:]
            box.close()


def measure_runtime(
    client: Any,
    image: str,
    limits: Any,
    runtime: str,
    rows: dict[str, list[float]],
    memory: dict[str, list[float]],
) -> None:
    """Every row under one runtime; names end in [runtime]."""

    def new(box_limits: Any = limits) -> DockerSandbox:
        return DockerSandbox(client, image, box_limits, {"codeact.bench": "1"}, runtime=runtime)

    box = new()
    box.warm.wait(60)
    rows[f"baseline: docker exec <container> true [{runtime}]"] = measure(
        lambda: timed(
            lambda: subprocess.run(
                ["docker", "exec", box.id, "true"], check=True, capture_output=True
            )
        )
    )

    def cold() -> float:
        started = time.perf_counter()
        fresh = new()
        elapsed = time.perf_counter() - started
        fresh.close()
        return elapsed

    rows[f"cold start to kernel ready [{runtime}]"] = measure(cold)
    settings.CODEACT_SANDBOX_RUNTIME = runtime  # the pool starts its warm sandbox under it
    rows[f"warm claim [{runtime}]"] = measure_claims(client)
    rows[f"trivial cell (1+1) [{runtime}]"] = measure(lambda: timed(lambda: box.execute("1+1")))
    rows[f"first stdout chunk [{runtime}]"] = measure(lambda: first_chunk(box))
    rows[f"matplotlib plot cell [{runtime}]"] = measure(
        lambda: timed(lambda: box.execute("plt.plot([1, 3, 2]); plt.show()"))
    )
    box.close()
    preloads = [limits.preload] + (
        [("numpy", "pandas"), ("numpy",), ()] if runtime == "runc" else []
    )
    for preload in preloads:
        name = f"{','.join(preload) or 'nothing'} [{runtime}]"
        memory[name] = idle_memory(new, replace(limits, preload=preload))


K8S = "kubernetes, emulated API server"


def measure_kubernetes(
    client: Any, image: str, limits: Any, runtime: str, rows: dict[str, list[float]]
) -> None:
    """The Kubernetes backend's rows, against the emulated API server (pods are
    containers of the same engine, under the runtime the Docker rows' targets use)."""
    import tempfile

    from sandbox.kubernetes_backend import KubernetesBackend, load_api_client
    from tests.support.kube_api import EmulatedKubeAPI

    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per request
    runtimes = {"gvisor": "runsc"} if runtime == "runsc" else {}
    server = EmulatedKubeAPI(client, runtimes=runtimes).start()
    namespace = "codeact-bench"
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = str(server.write_kubeconfig(Path(folder) / "config", namespace))
            runtime_class = "gvisor" if runtimes else ""
            backend = KubernetesBackend(load_api_client(config), namespace, runtime_class)
            tag = f"[{K8S}, {runtime}]"

            def cold() -> float:
                started = time.perf_counter()
                box = backend.start(image, limits, {"codeact.bench": "1"})
                box.warm.wait(limits.start_timeout)
                elapsed = time.perf_counter() - started
                box.close()
                return elapsed

            rows[f"cold start to kernel ready {tag}"] = measure(cold, min(N, 10))
            saved = (
                settings.CODEACT_SANDBOX_BACKEND,
                settings.CODEACT_KUBECONFIG,
                settings.CODEACT_K8S_NAMESPACE,
                settings.CODEACT_K8S_RUNTIME_CLASS,
            )
            settings.CODEACT_SANDBOX_BACKEND = "kubernetes"
            settings.CODEACT_KUBECONFIG = config
            settings.CODEACT_K8S_NAMESPACE = namespace
            settings.CODEACT_K8S_RUNTIME_CLASS = runtime_class
            try:
                rows[f"warm claim {tag}"] = measure_claims(client)
            finally:
                (
                    settings.CODEACT_SANDBOX_BACKEND,
                    settings.CODEACT_KUBECONFIG,
                    settings.CODEACT_K8S_NAMESPACE,
                    settings.CODEACT_K8S_RUNTIME_CLASS,
                ) = saved
            box = backend.start(image, limits, {"codeact.bench": "1"})
            box.warm.wait(limits.start_timeout)
            rows[f"trivial cell (1+1) {tag}"] = measure(lambda: timed(lambda: box.execute("1+1")))
            box.close()
    finally:
        server.stop()


def first_chunk(box: DockerSandbox) -> float:
    seen = threading.Event()
    arrived: list[float] = []
    started = time.perf_counter()

    def on_output(_: Any) -> None:
        if not seen.is_set():
            arrived.append(time.perf_counter() - started)
            seen.set()

    box.execute("print('first', flush=True)\nimport time\ntime.sleep(0.2)", on_output)
    return arrived[0]


def measure_claims(client: Any) -> list[float]:
    """Claim a pooled sandbox (row lock + attach + ping), then put it back."""
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-sandbox")
    conversation = Conversation.objects.create(owner=user, title="bench")
    record = pool.create_warm()

    def once() -> float:
        started = time.perf_counter()
        claim = pool.claim_for(conversation)
        elapsed = time.perf_counter() - started
        assert claim.fresh and claim.record.pk == record.pk
        claim.sandbox.detach()
        SandboxRecord.objects.filter(pk=record.pk).update(
            state=SandboxRecord.State.WARM, conversation=None, owner=None
        )
        return elapsed

    try:
        return measure(once)
    finally:
        pool.remove(record, "bench")
        conversation.delete()


def idle_memory(new: Callable[[Any], DockerSandbox], limits: Any) -> list[float]:
    boxes = [new(limits) for _ in range(3)]
    for box in boxes:
        box.warm.wait(60)
    time.sleep(3)
    values = [(box.memory_bytes() or 0) / MiB for box in boxes]
    for box in boxes:
        box.close()
    return values


def report(
    rows: dict[str, list[float]], memory: dict[str, list[float]], default: str, chosen: str
) -> None:
    ms = {name: (p(s, 0.5) * 1000, p(s, 0.95) * 1000, len(s)) for name, s in rows.items()}
    print(f"{'row':<72} {'p50 ms':>9} {'p95 ms':>9} {'n':>4}")
    for name, (p50, p95, n) in ms.items():
        print(f"{name:<72} {p50:>9.1f} {p95:>9.1f} {n:>4}")
    for preload, values in memory.items():
        name = f"idle sandbox MiB, preloading {preload}"
        print(f"{name:<72} {statistics.median(values):>9.1f}")

    tag = f" [{chosen}]"
    cold = ms["cold start to kernel ready" + tag][0]
    claim = ms["warm claim" + tag][0]
    cell = ms["trivial cell (1+1)" + tag][0]
    exec_ = ms["baseline: docker exec <container> true" + tag][0]
    mem = statistics.median(memory[default + tag])
    checks = [
        ("warm claim p50 <= 50 ms", claim <= 50, f"{claim:.1f} ms"),
        ("warm claim <= 0.1x cold start", claim <= 0.1 * cold, f"{claim / cold:.3f}x"),
        ("cold start to kernel ready p50 <= 1000 ms", cold <= 1000, f"{cold:.0f} ms"),
        ("trivial cell p50 <= 10 ms", cell <= 10, f"{cell:.1f} ms"),
        ("trivial cell <= 0.2x docker exec", cell <= 0.2 * exec_, f"{cell / exec_:.3f}x"),
        (f"idle sandbox <= 80 MiB ({default})", mem <= 80, f"{mem:.0f} MiB"),
    ]
    print(f"\n{'target, under ' + chosen:<72} {'measured':>12}  result")
    for name, ok, value in checks:
        print(f"{name:<72} {value:>12}  {'met' if ok else 'MISSED'}")
    run_ms = ms["baseline: docker run --rm python -c pass"][0]
    print(f"\ncold start / docker run baseline: {cold / run_ms:.2f}x")
    k8s = f" [{K8S}, {chosen}]"
    for row, docker_p50 in (("cold start to kernel ready", cold), ("warm claim", claim),
                            ("trivial cell (1+1)", cell)):  # fmt: skip
        if row + k8s in ms:
            ratio = ms[row + k8s][0] / docker_p50
            print(f"{row}, Kubernetes (emulated) / Docker [{chosen}]: {ratio:.2f}x")
    direct = ms.get("baseline: GET 200 B, directly on the test network")
    if direct:
        for name, (p50, _p95, _n) in ms.items():
            if name.startswith("GET 200 B through the egress proxy"):
                print(f"{name} / direct baseline: {p50 / direct[0]:.2f}x")


def run() -> None:
    try:
        migrate()
        main()
    finally:
        drop_own_database()


if __name__ == "__main__":
    run()
