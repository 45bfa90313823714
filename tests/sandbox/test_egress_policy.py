"""The egress proxy's policy as Squid configuration, and its log as records (pure
logic, plus Squid's own parser on the generated configuration)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from sandbox.egress import (
    EgressPolicy,
    WebRequest,
    domain_entries,
    error_pages,
    network_entries,
    parse_log_line,
    squid_config,
    summary,
    write_proxy_files,
)


def policy(tmp_path: Path, **changes: object) -> EgressPolicy:
    fields: dict[str, object] = {
        "listen_address": "10.99.0.1",
        "sandbox_networks": ("10.99.0.0/24",),
        "deployment_addresses": ("203.0.113.7", "127.0.0.1", "10.99.0.1"),
        "helpers": {"log": str(tmp_path / "log-helper"), "check": str(tmp_path / "check-helper")},
        "state_dir": str(tmp_path),
        "access_log": str(tmp_path / "access.log"),
        "cache_log": str(tmp_path / "cache.log"),
    }
    fields.update(changes)
    return EgressPolicy(**fields)  # type: ignore[arg-type]


def access_rules(config: str) -> list[str]:
    return [line for line in config.splitlines() if line.startswith("http_access")]


def denied_by(config: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(entry)
        for line in config.splitlines()
        if line.startswith("acl private_dst dst ")
        for entry in line.split()[3:]
    ]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.17.0.1",  # Docker's default bridge
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "255.255.255.255",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
    ],
)
def test_every_private_and_reserved_address_is_denied(tmp_path, address):
    ip = ipaddress.ip_address(address)
    assert any(ip in network for network in denied_by(squid_config(policy(tmp_path))))


@pytest.mark.parametrize("address", ["93.184.215.14", "198.51.100.7", "2606:4700::1"])
def test_public_addresses_are_not(tmp_path, address):
    ip = ipaddress.ip_address(address)
    assert not any(ip in network for network in denied_by(squid_config(policy(tmp_path))))


def test_ranges_are_merged_so_squid_keeps_them_all():
    assert network_entries(["10.99.0.0/24", "10.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]) == [
        "10.0.0.0/8",
        "224.0.0.0/3",
    ]


def test_rules_refuse_before_they_allow(tmp_path):
    config = squid_config(
        policy(tmp_path, allow_domains=("example.org",), deny_domains=("bad.example.org",))
    )
    rules = access_rules(config)
    assert rules[0] == "http_access deny !sandboxes"
    assert rules[-2:] == ["http_access allow sandboxes", "http_access deny all"]
    order = [rule.split()[-1] for rule in rules]
    # the denylist wins over the allowlist; addresses are checked for every name
    assert order.index("denied_domains") < order.index("!allowed_domains")
    assert order.index("!allowed_domains") < order.index("private_dst")
    assert order.index("deployment_dst") < order.index("private_dst")
    assert order.index("over_rate") < order.index("!web_ports")
    assert "acl allowed_domains dstdomain -n .example.org" in config
    assert "acl denied_domains dstdomain -n .bad.example.org" in config
    assert "acl deployment_dst dst 203.0.113.7/32" in config
    assert "http_access deny CONNECT !tls_ports" in config
    assert "cache deny all" in config  # one user's download is never another's reply


def test_without_lists_there_are_no_list_rules(tmp_path):
    rules = " ".join(access_rules(squid_config(policy(tmp_path))))
    assert "allowed_domains" not in rules and "denied_domains" not in rules


@pytest.mark.parametrize(
    "bad", ["exa mple.com", "*.example.com", "example.com/path", "http://example.com"]
)
def test_a_bad_domain_is_refused(bad):
    with pytest.raises(ValueError, match="not a domain name"):
        domain_entries([bad])


def test_domains_cover_their_subdomains():
    assert domain_entries(["Example.COM.", " api.example.org ", ""]) == [
        ".api.example.org",
        ".example.com",
    ]


def test_every_refusal_has_its_page_saying_why():
    pages = error_pages()
    assert "blocked: private address" in pages["ERR_CODEACT_PRIVATE"]
    assert "blocked: not on the allowlist" in pages["ERR_CODEACT_NOT_ALLOWED"]
    assert all(page.startswith("<!DOCTYPE html>") for page in pages.values())


def test_squid_accepts_the_generated_configuration(tmp_path):
    chosen = policy(
        tmp_path,
        allow_domains=("example.org",),
        deny_domains=("bad.example.org",),
        extra_denied_networks=("10.99.0.0/24",),
    )
    path = write_proxy_files(chosen, {"A": "it's"})
    parsed = subprocess.run(
        ["squid", "-k", "parse", "-f", path], capture_output=True, text=True, timeout=60
    )
    assert parsed.returncode == 0, parsed.stderr
    problems = [
        line
        for line in parsed.stderr.splitlines()
        if any(word in line for word in ("ERROR", "FATAL", "WARNING"))
        # Squid's advice for a proxy that hides itself; ours is not for browsers.
        and "HTTP requires the use of Via" not in line
    ]
    # e.g. one range inside another makes Squid silently drop the wider one
    assert problems == [], parsed.stderr
    launcher = Path(chosen.helpers["log"])
    assert launcher.stat().st_mode & 0o777 == 0o700  # it carries the Redis URL
    assert "export A='it'\"'\"'s'" in launcher.read_text()
    assert (tmp_path / "errors" / "ERR_CODEACT_PRIVATE").exists()
    assert (tmp_path / "errors" / "ERR_ACCESS_DENIED").exists()  # Squid's own pages too


LINE = (
    "1764547200.123 10.99.0.5 GET example.org 80 200 5120 310 42 - 203.0.113.9 TCP_MISS "
    "http://example.org/a%20table?"
)


def test_a_log_line_becomes_a_record():
    record = parse_log_line(LINE)
    assert record == WebRequest(
        at=1764547200.123,
        client="10.99.0.5",
        method="GET",
        host="example.org",
        port=80,
        status=200,
        reply_bytes=5120,
        request_bytes=310,
        duration_ms=42,
        error="",
        server="203.0.113.9",
        url="http://example.org/a table",
        squid_status="TCP_MISS",
    )
    assert record.outcome == "status 200" and record.refusal == ""


def test_a_refused_tunnel_says_why():
    record = parse_log_line(
        "1764547200.000 10.99.0.5 CONNECT 10.0.0.8 443 403 3900 0 0 ERR_CODEACT_PRIVATE - "
        "TCP_DENIED 10.0.0.8:443"
    )
    assert record is not None
    assert record.refusal == "blocked: private address"
    assert record.target == "https://10.0.0.8"
    assert record.outcome == "blocked: private address"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        LINE.replace("10.99.0.5", "not-an-ip"),
        LINE.replace(" 200 ", " abc "),
        LINE + " extra",
    ],
)
def test_a_malformed_log_line_is_dropped(line):
    assert parse_log_line(line) is None


def test_the_summary_puts_refusals_first_and_stays_short():
    good = parse_log_line(LINE)
    refused = parse_log_line(LINE.replace(" 200 ", " 403 ").replace(" - ", " ERR_CODEACT_RATE "))
    assert good is not None and refused is not None
    lines = summary([good] * 12 + [refused], kept=5)
    assert lines[0] == "GET http://example.org/a table → blocked: too many requests"
    assert lines[1].endswith("→ status 200, 5,120 bytes")
    assert lines[-1] == "… and 8 more"
    assert len(lines) == 6


def test_a_reply_cut_off_says_so():
    record = parse_log_line(LINE.replace("TCP_MISS", "TCP_MISS_ABORTED"))
    assert record is not None and not record.refusal
    assert record.outcome.startswith("failed: reply cut off")


def test_a_reply_past_the_cap_was_cut_there():
    line = LINE.replace(" 5120 ", " 2000000 ")
    assert parse_log_line(line, reply_cap=1 << 20).refusal == (  # type: ignore[union-attr]
        "blocked: response over the size limit"
    )
    assert parse_log_line(line).refusal == ""  # type: ignore[union-attr]
