"""The client's address behind reverse proxies that are trusted by address.

X-Forwarded-For is a list each proxy appends to; anyone can send a first
entry. Walking it from the right, past the proxies we trust, gives the first
address a trusted proxy saw connect: the client. A request that did not come
from a trusted proxy is its own client, whatever the header says.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from django.conf import settings
from django.http import HttpRequest

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def in_networks(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, entries: list[str]) -> bool:
    """Whether `ip` is in one of `entries` (addresses or networks, as settings list them)."""
    return any(ip in net for net in _networks(tuple(entries)))


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return in_networks(ip, settings.CODEACT_TRUSTED_PROXIES)


def client_ip(request: HttpRequest) -> str | None:
    remote: str | None = request.META.get("REMOTE_ADDR") or None
    if remote is None or not _trusted(remote):
        return remote
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [hop.strip() for hop in forwarded.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return remote  # a garbled header: the proxy is all we know
        if not _trusted(hop):
            return hop
    return remote
