"""The websocket Origin check: the whole origin, not just its host.

Channels' AllowedHostsOriginValidator compares the Origin's host with
ALLOWED_HOSTS, so a page on another port or scheme of an allowed host (another
app on the same machine, plain http beside https) could open sockets with the
user's cookies. Here the Origin must be exactly the site's own origin (the
request's scheme, its Host header, which must be allowed, and its port) or one
of CSRF_TRUSTED_ORIGINS, as Django's CSRF check asks of a form POST.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize(origin: str) -> str | None:
    """scheme://host:port in lower case, with the default port written out."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in DEFAULT_PORTS or not rest or "/" in rest:
        return None
    host, port = split_domain_port(rest)
    if not host:
        return None
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin1"))
    return None


def _is_secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    # Behind a proxy that ends TLS, the same header Django trusts for requests.
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        meta_name, expected = proxy_header
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = _header(scope, name)
        return forwarded is not None and forwarded.split(",")[0].strip() == expected
    return False


def own_origin(scope: dict[str, Any]) -> str | None:
    """The origin of the page that belongs to this request, if its Host is allowed."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return normalize(f"{'https' if _is_secure(scope) else 'http'}://{host}")


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin = normalize(_header(scope, b"origin") or "")
    if origin is None:
        return False
    trusted = {normalize(o) for o in settings.CSRF_TRUSTED_ORIGINS}
    return origin == own_origin(scope) or origin in trusted


class SameOriginValidator:
    """Refuse a websocket handshake whose Origin is not the site's own or a trusted one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.app(scope, receive, send)
