"""The websocket Origin rule on handshake scopes (the sockets: tests/chat/test_consumer.py)."""

import pytest

from codeact_web.origin import origin_allowed


def scope(origin, host="chat.example.org", scheme="ws", **headers):
    raw = [(b"host", host.encode()), (b"origin", origin.encode())]
    raw += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "websocket", "scheme": scheme, "headers": raw}


@pytest.fixture(autouse=True)
def hosts(settings):
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_PROXY_SSL_HEADER = None


def test_it_accepts_the_sites_own_origin_with_default_or_explicit_port():
    assert origin_allowed(scope("http://chat.example.org"))
    assert origin_allowed(scope("http://chat.example.org:80"))
    assert origin_allowed(scope("https://chat.example.org", scheme="wss"))
    assert origin_allowed(scope("http://chat.example.org:8000", host="chat.example.org:8000"))


def test_it_refuses_another_scheme_port_or_a_host_not_allowed():
    assert not origin_allowed(scope("https://chat.example.org"))
    assert not origin_allowed(scope("http://chat.example.org:8080"))
    assert not origin_allowed(scope("http://evil.example", host="evil.example"))
    assert not origin_allowed(scope(""))


def test_it_believes_the_proxy_ssl_header_only_when_configured(settings):
    behind_tls = scope("https://chat.example.org", x_forwarded_proto="https")
    assert not origin_allowed(behind_tls)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(behind_tls)
