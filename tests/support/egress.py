"""Web access under test: a test "internet", an egress network and a real Squid.

`internet_of_tests` makes a Docker network the test creates (198.51.100.0/24, a
documentation range outside every denied one) with two web servers on it: the
site (site.test) and a stand-in for a deployment host that has a public
address (models.test). `EgressProxy` makes an internal egress network of its
own, the host firewall rules for its bridge, and runs Squid with the app's
generated configuration and helpers; its hosts file names the test hosts,
plus names that resolve to loopback and to a private address. Everything is
removed at the end; traffic never leaves this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
from django.conf import settings

from chat.worker import egress
from chat.worker.egress import collect, reset_address
from sandbox.egress import EgressPolicy, WebRequest, parse_log_line, write_proxy_files
from sandbox.image_tag import image_tag
from sandbox.profile import WebAccess

SERVER = (Path(__file__).parent / "test_internet_server.py").read_text()
SUBNET = "198.51.100.0/24"
SITE = "198.51.100.10"
DEPLOYMENT_HOST = "198.51.100.20"  # "the model server", with a public address


@dataclass
class Internet:
    network: Any
    containers: list[Any]


@contextmanager
def internet_of_tests(client: Any) -> Iterator[Internet]:
    tag = uuid.uuid4().hex[:6]
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)])
    network = client.networks.create(
        f"cx-internet-{tag}", driver="bridge", ipam=ipam, labels={"codeact.test": "1"}
    )
    containers = []
    try:
        for address in (SITE, DEPLOYMENT_HOST):
            container = client.containers.create(
                image_tag(),
                entrypoint=["/opt/sandbox/bin/python", "-c", SERVER, "80", "443"],
                user="0",
                detach=True,
                labels={"codeact.test": "1"},
                network=network.name,
            )
            network.disconnect(container)
            network.connect(container, ipv4_address=address)
            container.start()
            containers.append(container)
        for address in (SITE, DEPLOYMENT_HOST):
            _wait_port(address, 80)
        yield Internet(network, containers)
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()


def _wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{host}:{port} did not open")


HOSTS = f"""\
{SITE} site.test www.site.test other.test
{DEPLOYMENT_HOST} models.test
127.0.0.1 localhost loopback.test
10.1.2.3 private.test
169.254.169.254 metadata.test
"""


@dataclass
class EgressProxy:
    net: egress.EgressNetwork
    policy: EgressPolicy
    process: subprocess.Popen[bytes]
    prefix: str

    @property
    def access(self) -> WebAccess:
        return WebAccess(
            self.net.name, egress.sandbox_environment(self.net, self.policy.listen_port)
        )

    def requests_of(self, address: str, settle: float = 0.3) -> list[WebRequest]:
        """Every request logged for this sandbox address so far (waits for the log)."""
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        time.sleep(settle)
        lines = collect(client, self.prefix, address)
        parsed = (parse_log_line(line, self.policy.reply_max_bytes) for line in lines)
        return [r for r in parsed if r is not None]

    def reset(self, address: str) -> None:
        import redis

        reset_address(redis.Redis.from_url(settings.REDIS_URL), self.prefix, address)

    def cache_log(self) -> str:
        return Path(self.policy.cache_log).read_text(errors="replace")


@contextmanager
def egress_proxy(client: Any, prefix: str = "", **changes: Any) -> Iterator[EgressProxy]:
    """An egress network, its firewall rules and Squid, for one test module; prefix:
    its Redis keys' (a worker's CHANNEL_PREFIX, when a worker collects them)."""
    tag = uuid.uuid4().hex[:6]
    name = f"cxeg{tag}"  # also the bridge's name: at most 15 characters
    net = egress.ensure_network(client, name=name, subnet="")
    port = 3128
    egress.install_firewall(net.bridge, port)
    state = Path(tempfile.mkdtemp(prefix=f"codeact-egress-{tag}-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    (state / "hosts").write_text(HOSTS)
    prefix = prefix or f"codeact-test-{tag}"
    chosen = replace(
        EgressPolicy(
            listen_address=net.gateway,
            listen_port=port,
            sandbox_networks=(net.subnet,),
            deployment_addresses=(DEPLOYMENT_HOST, *egress.deployment_addresses()),
            extra_denied_networks=(net.subnet,),
            reply_max_bytes=1 << 20,
            requests_per_minute=60,
            budget_bytes=8 << 20,
            helpers={"log": str(state / "log-helper"), "check": str(state / "check-helper")},
            state_dir=str(state),
            access_log=str(state / "access.log"),
            cache_log=str(state / "cache.log"),
            hosts_file=str(state / "hosts"),
            read_timeout=10,
            request_lifetime=30,
        ),
        **changes,
    )
    path = write_proxy_files(
        chosen,
        {"CODEACT_EGRESS_REDIS_URL": settings.REDIS_URL, "CODEACT_EGRESS_REDIS_PREFIX": prefix},
    )
    egress.hand_to_squid_user(str(state))
    process = subprocess.Popen(
        ["squid", "-N", "-f", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(net.gateway, port)
        yield EgressProxy(net, chosen, process, prefix)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        egress.remove_firewall(net.bridge, port)
        client.networks.get(name).remove()
