"""Web access for sandboxes: the egress proxy's policy, its Squid configuration, and
what its log says about each request.

With CODEACT_EGRESS=proxy a sandbox that is allowed web access joins one Docker
network, created `internal` (no route out) with inter-container traffic off, on
which the only thing it can reach is Squid listening on the bridge's gateway
address (the host firewall drops everything else that arrives from that bridge).
Squid decides every request after resolving its name: private, loopback,
link-local, CGNAT, multicast and reserved addresses, the deployment's own hosts
and the proxy host's own addresses are refused, so are ports other than the
configured ones, domains off the allowlist or on the denylist, a sandbox over
its request rate or its byte budget, and replies over the size cap. HTTPS goes
through CONNECT: nothing is decrypted.

Each request is logged, in the format below, to a log daemon
(`sandbox.egress_helper`) that passes it to Redis keyed by the sandbox's address
on the egress network; the worker collects its sandbox's records after each cell.

Nothing here imports Django: the policy comes in as a value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

MiB = 1 << 20

# Never reachable through the proxy, whatever a name resolves to.
DENIED_NETWORKS = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # RFC 1918
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, and the cloud metadata address 169.254.169.254
    "172.16.0.0/12",  # RFC 1918 (Docker's default bridges)
    "192.0.0.0/24",  # IETF protocol assignments
    "192.168.0.0/16",  # RFC 1918
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and broadcast
    "::/128",  # unspecified
    "::1/128",  # loopback
    # No ::ffff:0:0/96 (IPv4-mapped): Squid keeps every IPv4 address in that form, so
    # it would mean "all of IPv4"; the IPv4 ranges above cover mapped addresses.
    "64:ff9b::/96",  # NAT64: the same
    "100::/64",  # discard
    "2002::/16",  # 6to4: embeds an IPv4 address
    "fc00::/7",  # unique-local
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
)

# The refusals the proxy can give, by the error page Squid names in its log.
REFUSALS = {
    "ERR_CODEACT_PRIVATE": "blocked: private address",
    "ERR_CODEACT_DEPLOYMENT": "blocked: a host of this service",
    "ERR_CODEACT_PORT": "blocked: port not allowed",
    "ERR_CODEACT_NOT_ALLOWED": "blocked: not on the allowlist",
    "ERR_CODEACT_DENYLIST": "blocked: on the denylist",
    "ERR_CODEACT_RATE": "blocked: too many requests",
    "ERR_CODEACT_BUDGET": "blocked: download budget used up",
    "ERR_CODEACT_SOURCE": "blocked: not a sandbox",
    "ERR_TOO_BIG": "blocked: response over the size limit",
}
# Failures that are not the policy's doing.
FAILURES = {
    "ERR_DNS_FAIL": "failed: name not found",
    "ERR_CONNECT_FAIL": "failed: could not connect",
    "ERR_READ_TIMEOUT": "failed: timed out",
    "ERR_LIFETIME_EXP": "failed: timed out",
    "ERR_CONNECT_TIMEOUT": "failed: timed out",
    "ERR_READ_ERROR": "failed: connection broken",
    "ERR_WRITE_ERROR": "failed: connection broken",
    "ERR_ZERO_SIZE_OBJECT": "failed: empty reply",
    "ERR_INVALID_URL": "failed: invalid URL",
    "ERR_INVALID_REQ": "failed: invalid request",
    "ERR_UNSUP_REQ": "failed: unsupported request",
}
# What the error page says (what `requests` shows for plain HTTP).
_PAGE_DETAIL = {
    "ERR_CODEACT_PRIVATE": "its address is in a private, loopback, link-local or reserved network",
    "ERR_CODEACT_DEPLOYMENT": "its address belongs to this service's own servers",
    "ERR_CODEACT_PORT": "only the ports the operator allows can be reached",
    "ERR_CODEACT_NOT_ALLOWED": "the operator allows only the domains on an allowlist",
    "ERR_CODEACT_DENYLIST": "the operator has blocked this domain",
    "ERR_CODEACT_RATE": "this Python session sent too many requests in the last minute",
    "ERR_CODEACT_BUDGET": "this Python session has downloaded as much as it may",
    "ERR_CODEACT_SOURCE": "only sandboxes may use this proxy",
}


@dataclass(frozen=True)
class EgressPolicy:
    """Everything the proxy enforces; every value comes from a setting."""

    listen_address: str  # the egress bridge's gateway, where Squid listens
    listen_port: int = 3128
    sandbox_networks: tuple[str, ...] = ()  # who may use the proxy (the egress subnet)
    ports: tuple[int, ...] = (80, 443)
    tls_ports: tuple[int, ...] = (443,)  # ports CONNECT may open
    allow_domains: tuple[str, ...] = ()  # empty: every domain not denied
    deny_domains: tuple[str, ...] = ()
    deployment_addresses: tuple[str, ...] = ()  # PostgreSQL, Redis, models, web, this host
    extra_denied_networks: tuple[str, ...] = ()
    connect_timeout: int = 10
    read_timeout: int = 30  # seconds without a byte from the server
    request_lifetime: int = 120  # seconds one request (or HTTPS tunnel) may last
    reply_max_bytes: int = 50 * MiB
    request_max_bytes: int = 10 * MiB
    requests_per_minute: int = 120
    budget_bytes: int = 500 * MiB  # per sandbox, requests and replies together
    helpers: dict[str, str] = field(default_factory=dict)  # "log", "check": executables
    state_dir: str = "/var/lib/codeact-egress"
    hosts_file: str = "/etc/hosts"  # names Squid resolves before asking DNS
    access_log: str = "/var/log/codeact-egress-access.log"
    cache_log: str = "/var/log/codeact-egress-cache.log"

    @property
    def proxy_url(self) -> str:
        host = self.listen_address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.listen_port}"


def domain_entries(domains: Iterable[str]) -> list[str]:
    """Squid dstdomain entries: `example.com` covers its subdomains too."""
    entries: list[str] = []
    for raw in domains:
        domain = raw.strip().lower().rstrip(".")
        if not domain:
            continue
        if not re.fullmatch(r"\.?[a-z0-9*_-]+(\.[a-z0-9_-]+)*", domain) or "*" in domain:
            raise ValueError(f"not a domain name: {raw!r}")
        entries.append(domain if domain.startswith(".") else "." + domain)
    return sorted(set(entries))


def network_entries(addresses: Iterable[str]) -> list[str]:
    """Squid dst entries for addresses and networks (bad ones raise ValueError),
    merged: Squid drops a range that contains another one of the same ACL."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for raw in addresses:
        raw = raw.strip()
        if raw:
            network = ipaddress.ip_network(raw, strict=False)
            if isinstance(network, ipaddress.IPv4Network):
                v4.append(network)
            else:
                v6.append(network)
    merged = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return [str(network) for network in merged]


def _within(inner: ipaddress.IPv4Network | ipaddress.IPv6Network, outer: object) -> bool:
    return (
        isinstance(outer, type(inner)) and inner.subnet_of(outer)  # type: ignore[arg-type]
    )


def _acl(name: str, kind: str, values: Iterable[str]) -> list[str]:
    """One `acl` line per few values: Squid's lines have a length limit."""
    values = list(values)
    return [f"acl {name} {kind} {' '.join(values[i : i + 8])}" for i in range(0, len(values), 8)]


# Squid leaves query strings out of %ru (strip_query_terms, its default): URLs carry
# API keys more often than not, and the record needs the host, not the key.
LOG_FORMAT = "%ts.%03tu %>a %rm %>rd %>rP %>Hs %<st %>st %tr %err_code %<a %Ss %#ru"


def squid_config(policy: EgressPolicy) -> str:
    """squid.conf for this policy (order matters: the first matching rule decides)."""
    if not policy.sandbox_networks:
        raise ValueError("the proxy needs the egress network's subnet")
    listen = policy.listen_address
    if ":" in listen:
        listen = f"[{listen}]"
    lines = [
        "# Generated by `manage.py egress`: edit the CODEACT_EGRESS_* settings, not this file.",
        f"http_port {listen}:{policy.listen_port}",
        f"pid_filename {policy.state_dir}/squid.pid",
        f"error_directory {policy.state_dir}/errors",
        f"cache_log {policy.cache_log}",
        f"hosts_file {policy.hosts_file}",
        f"logformat codeact {LOG_FORMAT}",
        f"logfile_daemon {policy.helpers['log']}",
        f"access_log daemon:{policy.access_log} logformat=codeact",
        "buffered_logs off",
        # Nothing is cached: one user's download is never another's reply.
        "cache deny all",
        "cache_mem 8 MB",
        "via off",
        "forwarded_for delete",
        "httpd_suppress_version_string on",
        "visible_hostname codeact-egress",
        "netdb_filename none",
        "pinger_enable off",
        "icp_port 0",
        "htcp_port 0",
        "shutdown_lifetime 1 seconds",
        f"connect_timeout {policy.connect_timeout} seconds",
        f"read_timeout {policy.read_timeout} seconds",
        f"request_timeout {policy.read_timeout} seconds",
        f"client_lifetime {policy.request_lifetime} seconds",
        f"forward_timeout {policy.request_lifetime} seconds",
        f"request_body_max_size {policy.request_max_bytes} bytes",
        "",
        *_acl("sandboxes", "src", network_entries(policy.sandbox_networks)),
        *_acl("web_ports", "port", [str(p) for p in policy.ports]),
        *_acl("tls_ports", "port", [str(p) for p in policy.tls_ports]),
        "acl CONNECT method CONNECT",
        *_acl(
            "private_dst",
            "dst",
            network_entries([*DENIED_NETWORKS, *policy.extra_denied_networks]),
        ),
    ]
    denied = [ipaddress.ip_network(n) for n in DENIED_NETWORKS]
    deployment = network_entries(
        a
        for a in policy.deployment_addresses
        if not any(_within(ipaddress.ip_network(a, strict=False), n) for n in denied)
    )
    if deployment:
        lines += _acl("deployment_dst", "dst", deployment)
    deny = domain_entries(policy.deny_domains)
    if deny:
        lines += _acl("denied_domains", "dstdomain -n", deny)
    allow = domain_entries(policy.allow_domains)
    if allow:
        lines += _acl("allowed_domains", "dstdomain -n", allow)
    check = policy.helpers["check"]
    lines += [
        "external_acl_type codeact_rate ttl=0 negative_ttl=0 children-max=4 "
        f"children-startup=1 %>a {check} rate {policy.requests_per_minute}",
        "external_acl_type codeact_budget ttl=0 negative_ttl=0 children-max=4 "
        f"children-startup=1 %>a {check} budget {policy.budget_bytes}",
        "acl over_rate external codeact_rate",
        "acl over_budget external codeact_budget",
        "",
        # Each refusal names its page, which the log records and the worker explains.
        "http_access deny !sandboxes",
        "deny_info ERR_CODEACT_SOURCE sandboxes",
        "http_access deny manager",
        "http_access deny over_rate",
        "deny_info ERR_CODEACT_RATE over_rate",
        "http_access deny !web_ports",
        "deny_info ERR_CODEACT_PORT web_ports",
        "http_access deny CONNECT !tls_ports",
        "deny_info ERR_CODEACT_PORT tls_ports",
    ]
    if deny:
        lines += [
            "http_access deny denied_domains",
            "deny_info ERR_CODEACT_DENYLIST denied_domains",
        ]
    if allow:
        lines += [
            "http_access deny !allowed_domains",
            "deny_info ERR_CODEACT_NOT_ALLOWED allowed_domains",
        ]
    if deployment:
        lines += [
            "http_access deny deployment_dst",
            "deny_info ERR_CODEACT_DEPLOYMENT deployment_dst",
        ]
    lines += [
        "http_access deny private_dst",
        "deny_info ERR_CODEACT_PRIVATE private_dst",
        "http_access deny over_budget",
        "deny_info ERR_CODEACT_BUDGET over_budget",
        "http_access allow sandboxes",
        "http_access deny all",
        f"reply_body_max_size {policy.reply_max_bytes} bytes",
        "",
    ]
    return "\n".join(lines)


def error_pages() -> dict[str, str]:
    """The error page of each refusal: its reason first, so a program reading the
    body sees it (Squid fills in %U, the URL, and %H, the host)."""
    pages = {}
    for name, detail in _PAGE_DETAIL.items():
        reason = REFUSALS[name]
        pages[name] = (
            "<!DOCTYPE html>\n<html><head><title>"
            f"{reason}</title></head>\n<body><p>{reason} (%H): the web access of this Python "
            f"session refused this request because {detail}.</p></body></html>\n"
        )
    return pages


@dataclass(frozen=True)
class WebRequest:
    """One line of the proxy's access log."""

    at: float  # Unix time the request ended
    client: str  # the sandbox's address on the egress network
    method: str
    host: str
    port: int | None
    status: int | None  # HTTP status to the client (a refusal is 403); None: none sent
    reply_bytes: int
    request_bytes: int
    duration_ms: int
    error: str  # Squid's error page name, "" when there was none
    server: str  # the address connected to, "" when none
    url: str  # without its query string
    squid_status: str = ""  # TCP_MISS, TCP_TUNNEL, TCP_DENIED, TCP_MISS_ABORTED, ...
    # The reply size cap in force: a reply of unknown length that passed it was cut
    # off there (Squid logs no error for it). 0: not known.
    reply_cap: int = 0

    @property
    def refusal(self) -> str:
        """Why the proxy refused it ("blocked: ..."), or "" when it did not."""
        if self.error in REFUSALS:
            return REFUSALS[self.error]
        if self.reply_cap and self.method != "CONNECT" and self.reply_bytes > self.reply_cap:
            return REFUSALS["ERR_TOO_BIG"]
        if self.error == "ERR_ACCESS_DENIED":
            return "blocked"
        return ""

    @property
    def outcome(self) -> str:
        """What happened, in a few words: a refusal, a failure, or the status."""
        if self.refusal:
            return self.refusal
        if self.error in FAILURES:
            return FAILURES[self.error]
        if self.error:
            return f"failed: {self.error.removeprefix('ERR_').lower().replace('_', ' ')}"
        if self.squid_status.endswith("_ABORTED") and self.method != "CONNECT":
            return "failed: reply cut off (over the size limit, or the connection broke)"
        if self.method == "CONNECT":
            return "tunnel closed" if self.status in (None, 200) else f"status {self.status}"
        return f"status {self.status}" if self.status else "no reply"

    @property
    def target(self) -> str:
        """What was asked for: the URL, or host:port for an HTTPS tunnel."""
        if self.method == "CONNECT":
            return f"https://{self.host}" + ("" if self.port in (None, 443) else f":{self.port}")
        return self.url


def _dash_int(value: str) -> int | None:
    return None if value in ("-", "") else int(value)


def parse_log_line(line: str, reply_cap: int = 0) -> WebRequest | None:
    """A WebRequest from one line in LOG_FORMAT, or None when it is not one;
    reply_cap: the proxy's reply size cap (EgressPolicy.reply_max_bytes)."""
    parts = line.strip().split(" ")
    if len(parts) != 13:
        return None
    at, client, method, host, port, status, reply, request, took, error, server, kind, url = parts
    try:
        ipaddress.ip_address(client)
        status_code = _dash_int(status)
        return WebRequest(
            at=float(at),
            client=client,
            method=method[:16],
            host=unquote(host)[:255] if host != "-" else "",
            port=_dash_int(port),
            status=status_code or None,
            reply_bytes=max(0, _dash_int(reply) or 0),
            request_bytes=max(0, _dash_int(request) or 0),
            duration_ms=max(0, _dash_int(took) or 0),
            error="" if error in ("-", "") else error[:64],
            server="" if server in ("-", "") else server[:64],
            url=unquote(url).removesuffix("?")[:2000],
            squid_status=kind[:40],
            reply_cap=reply_cap,
        )
    except ValueError:
        return None


def summary(requests: list[WebRequest], kept: int = 10) -> list[str]:
    """Lines for the model's observation: every refusal and failure, then the rest,
    up to `kept` lines, and a count of what is left out."""
    if not requests:
        return []
    ordered = sorted(requests, key=lambda r: (not (r.refusal or r.error), r.at))
    lines = []
    for item in ordered[:kept]:
        size = f", {item.reply_bytes:,} bytes" if not (item.refusal or item.error) else ""
        lines.append(f"{item.method} {item.target} → {item.outcome}{size}")
    if len(ordered) > kept:
        lines.append(f"… and {len(ordered) - kept} more")
    return lines


SQUID_TEMPLATES = "/usr/share/squid/errors/templates"


def write_proxy_files(
    policy: EgressPolicy,
    environment: dict[str, str],
    python: str = "/usr/bin/python3",
    templates: str = SQUID_TEMPLATES,
) -> str:
    """Write squid.conf, the error pages, the helper (sandbox/egress_helper.py, which
    needs only the standard library) and its launchers into policy.state_dir;
    returns the path of squid.conf.

    The launchers carry the helpers' environment (the Redis URL may hold a
    password), so they are readable by their owner only; Squid runs them as the
    user it runs as (hand the folder to that user).
    """
    import os
    import shlex
    import shutil

    state = policy.state_dir
    errors = os.path.join(state, "errors")
    os.makedirs(errors, exist_ok=True)
    for name in os.listdir(templates):
        shutil.copyfile(os.path.join(templates, name), os.path.join(errors, name))
    for name, page in error_pages().items():
        with open(os.path.join(errors, name), "w", encoding="utf-8") as out:
            out.write(page)
    helper = os.path.join(state, "egress_helper.py")
    shutil.copyfile(os.path.join(os.path.dirname(__file__), "egress_helper.py"), helper)
    exports = "".join(
        f"export {key}={shlex.quote(value)}\n" for key, value in sorted(environment.items())
    )
    for role, launcher in policy.helpers.items():
        fd = os.open(launcher, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(
                f"#!/bin/sh\n# The egress proxy's {role} helper (sandbox/egress_helper.py).\n"
                f'{exports}exec {shlex.quote(python)} {shlex.quote(helper)} {role} "$@"\n'
            )
        os.chmod(launcher, 0o700)
    path = os.path.join(state, "squid.conf")
    with open(path, "w", encoding="utf-8") as out:
        out.write(squid_config(policy))
    return path
