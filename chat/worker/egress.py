"""Web access on this deployment: the egress network, the proxy's policy from the
settings, the host firewall for the network's bridge, and the records of a
sandbox's requests (sandbox/egress.py has the policy itself).

`manage.py egress run` (started by `make run` when CODEACT_EGRESS=proxy) calls
`prepare()` and then runs Squid in the foreground. Workers only attach
sandboxes to the network, and refuse to when it is not internal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings

from sandbox.egress import EgressPolicy, WebRequest, parse_log_line, write_proxy_files
from sandbox.egress_helper import keys, minute, rate_key

log = logging.getLogger(__name__)


class EgressUnavailable(Exception):
    """Web access is on, but the network or the proxy is not set up as it must be."""


def enabled() -> bool:
    return bool(settings.CODEACT_EGRESS == "proxy")


@dataclass(frozen=True)
class EgressNetwork:
    name: str
    subnet: str
    gateway: str
    bridge: str


def _describe(network: Any) -> EgressNetwork:
    attrs = network.attrs
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    if not configs or not configs[0].get("Gateway"):
        raise EgressUnavailable(f"the Docker network {network.name} has no subnet and gateway")
    options = attrs.get("Options") or {}
    return EgressNetwork(
        name=network.name,
        subnet=configs[0]["Subnet"],
        gateway=configs[0]["Gateway"].split("/")[0],
        bridge=options.get("com.docker.network.bridge.name") or f"br-{network.id[:12]}",
    )


def check_network(network: Any) -> EgressNetwork:
    """The network's addresses, once it is checked to be the isolated kind."""
    attrs = network.attrs
    options = attrs.get("Options") or {}
    if not attrs.get("Internal"):
        raise EgressUnavailable(
            f"the Docker network {network.name} is not internal: sandboxes on it could "
            "reach the outside without the proxy. Remove it; `manage.py egress run` makes it."
        )
    if options.get("com.docker.network.bridge.enable_icc", "true") != "false":
        raise EgressUnavailable(
            f"the Docker network {network.name} lets containers reach each other; remove it "
            "and let `manage.py egress run` make it."
        )
    return _describe(network)


def ensure_network(
    client: Any, name: str | None = None, subnet: str | None = None
) -> EgressNetwork:
    """The egress network, created if missing: internal (no route out), containers
    unable to reach each other, with a fixed bridge name for the firewall."""
    import docker

    name = name or settings.CODEACT_EGRESS_NETWORK
    subnet = settings.CODEACT_EGRESS_SUBNET if subnet is None else subnet
    try:
        return check_network(client.networks.get(name))
    except docker.errors.NotFound:
        pass
    ipam = None
    if subnet:
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
    bridge = settings.CODEACT_EGRESS_BRIDGE if name == settings.CODEACT_EGRESS_NETWORK else name
    network = client.networks.create(
        name,
        driver="bridge",
        internal=True,
        ipam=ipam,
        options={
            "com.docker.network.bridge.name": bridge[:15],
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.enable_ip_masquerade": "false",
        },
        labels={"codeact.egress": "1"},
    )
    network.reload()
    return check_network(network)


def network(client: Any) -> EgressNetwork:
    """The egress network as workers see it (they never create it)."""
    import docker

    try:
        return check_network(client.networks.get(settings.CODEACT_EGRESS_NETWORK))
    except docker.errors.NotFound:
        raise EgressUnavailable(
            f"web access is on, but the Docker network {settings.CODEACT_EGRESS_NETWORK} does "
            "not exist: start the egress proxy (`make run` or `manage.py egress run`)."
        ) from None


# --- the firewall of the proxy host ---------------------------------------------------

FIREWALL_COMMENT = "codeact-egress"


def firewall_rules(bridge: str, port: int) -> list[list[str]]:
    """INPUT rules for the egress bridge: sandboxes reach the proxy's port on this
    host and nothing else of it (the network being internal, nothing beyond)."""
    tag = ["-m", "comment", "--comment", FIREWALL_COMMENT]
    return [
        ["-i", bridge, "-p", "tcp", "--dport", str(port), *tag, "-j", "ACCEPT"],
        ["-i", bridge, *tag, "-j", "DROP"],
    ]


def install_firewall(bridge: str, port: int) -> None:
    """Put the rules first in INPUT (iptables and ip6tables), once each."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            if tool == "iptables":
                raise EgressUnavailable("iptables is missing: the proxy host cannot be protected")
            continue
        for position, rule in enumerate(firewall_rules(bridge, port), start=1):
            present = subprocess.run(
                [tool, "-w", "-C", "INPUT", *rule], capture_output=True, check=False
            )
            if present.returncode != 0:
                done = subprocess.run(
                    [tool, "-w", "-I", "INPUT", str(position), *rule],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    raise EgressUnavailable(f"{tool} refused a rule: {done.stderr.strip()}")


def remove_firewall(bridge: str, port: int) -> None:
    """Take the bridge's rules out again (when its network is removed)."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for rule in firewall_rules(bridge, port):
            subprocess.run([tool, "-w", "-D", "INPUT", *rule], capture_output=True, check=False)


# --- the policy ----------------------------------------------------------------------


def _resolve(host: str) -> list[str]:
    if not host:
        return []
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except OSError:
        return []


def _local_addresses() -> list[str]:
    """Every address of this host's interfaces (the proxy connecting to one of them
    would reach this host's services)."""
    try:
        shown = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True
        )
        interfaces = json.loads(shown.stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return []
    return sorted(
        {
            info["local"].split("%")[0]
            for interface in interfaces
            for info in interface.get("addr_info", [])
            if info.get("local")
        }
    )


def deployment_addresses() -> list[str]:
    """Where this service's own parts live: refused even when they are public."""
    hosts = [
        str(settings.DATABASES["default"].get("HOST") or ""),
        urlsplit(settings.REDIS_URL).hostname or "",
        urlsplit(settings.CELERY_BROKER_URL).hostname or "",
        *(urlsplit(str(m["base_url"])).hostname or "" for m in settings.CODEACT_MODELS),
        *(h.lstrip(".") for h in settings.ALLOWED_HOSTS if h not in ("*",)),
    ]
    addresses = {a for host in hosts if not host.startswith("/") for a in _resolve(host)}
    addresses.update(_local_addresses())
    return sorted(addresses)


def helper_environment() -> dict[str, str]:
    return {
        "CODEACT_EGRESS_REDIS_URL": settings.REDIS_URL,
        "CODEACT_EGRESS_REDIS_PREFIX": settings.CHANNEL_PREFIX,
    }


def policy(net: EgressNetwork) -> EgressPolicy:
    state = str(settings.CODEACT_EGRESS_STATE_DIR)
    return EgressPolicy(
        listen_address=net.gateway,
        listen_port=settings.CODEACT_EGRESS_PORT,
        sandbox_networks=(net.subnet,),
        ports=tuple(settings.CODEACT_EGRESS_PORTS),
        tls_ports=tuple(settings.CODEACT_EGRESS_TLS_PORTS),
        allow_domains=tuple(settings.CODEACT_EGRESS_ALLOW),
        deny_domains=tuple(settings.CODEACT_EGRESS_DENY),
        deployment_addresses=tuple(deployment_addresses()),
        extra_denied_networks=(net.subnet, *settings.CODEACT_EGRESS_DENY_NETWORKS),
        read_timeout=settings.CODEACT_EGRESS_READ_TIMEOUT,
        request_lifetime=settings.CODEACT_EGRESS_REQUEST_SECONDS,
        reply_max_bytes=settings.CODEACT_EGRESS_REPLY_MAX_MB << 20,
        request_max_bytes=settings.CODEACT_EGRESS_UPLOAD_MAX_MB << 20,
        requests_per_minute=settings.CODEACT_EGRESS_REQUESTS_PER_MINUTE,
        budget_bytes=settings.CODEACT_EGRESS_BUDGET_MB << 20,
        helpers={"log": f"{state}/log-helper", "check": f"{state}/check-helper"},
        state_dir=state,
        access_log=f"{state}/access.log",
        cache_log=f"{state}/cache.log",
    )


def prepare(client: Any) -> tuple[EgressPolicy, str]:
    """Network, firewall and Squid's files; returns the policy and squid.conf's path."""
    net = ensure_network(client)
    install_firewall(net.bridge, settings.CODEACT_EGRESS_PORT)
    chosen = policy(net)
    path = write_proxy_files(chosen, helper_environment())
    hand_to_squid_user(chosen.state_dir)
    return chosen, path


def hand_to_squid_user(state_dir: str) -> None:
    """Squid started as root runs as its own user (Debian's `proxy`): that user must
    own its state, logs and helper launchers."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("proxy")
    except KeyError:
        return
    for folder, _dirs, names in os.walk(state_dir):
        os.chown(folder, user.pw_uid, user.pw_gid)
        for name in names:
            os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid)


# --- what a sandbox gets, and what it did ----------------------------------------------


def sandbox_environment(net: EgressNetwork, port: int | None = None) -> dict[str, str]:
    """Proxy variables for programs in the sandbox (requests, urllib, pandas, pip)."""
    url = f"http://{net.gateway}:{port or settings.CODEACT_EGRESS_PORT}"
    return {
        "HTTP_PROXY": url,
        "HTTPS_PROXY": url,
        "http_proxy": url,
        "https_proxy": url,
        "NO_PROXY": "localhost,127.0.0.1,::1",
        "no_proxy": "localhost,127.0.0.1,::1",
    }


def _redis() -> Any:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def reset_address(client: Any, prefix: str, address: str) -> None:
    """A new sandbox has this address: forget its predecessor's records and counts
    (a minute's request count lives two minutes: only these can still exist)."""
    names = keys(prefix, address)
    now = minute()
    counts = [rate_key(prefix, address, m) for m in (now - 1, now, now + 1)]
    client.delete(names["log"], names["bytes"], *counts)


def collect(client: Any, prefix: str, address: str) -> list[str]:
    """Take the access-log lines recorded for this address so far."""
    key = keys(prefix, address)["log"]
    pipe = client.pipeline(transaction=True)
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    lines, _ = pipe.execute()
    return [line.decode("utf-8", "replace") for line in lines]


def reset(address: str) -> None:
    """A new sandbox has this address: its records and counts start from zero."""
    try:
        with contextlib.closing(_redis()) as client:
            reset_address(client, settings.CHANNEL_PREFIX, address)
    except redis.RedisError as exc:
        raise EgressUnavailable(f"Redis did not answer: {exc}") from exc


def take_requests(address: str) -> list[WebRequest]:
    """The requests this address made that are not collected yet."""
    try:
        with contextlib.closing(_redis()) as client:
            lines = collect(client, settings.CHANNEL_PREFIX, address)
    except redis.RedisError:
        log.warning("could not collect the web requests of %s", address, exc_info=True)
        return []
    cap = settings.CODEACT_EGRESS_REPLY_MAX_MB << 20
    return [r for r in (parse_log_line(line, cap) for line in lines) if r is not None]
