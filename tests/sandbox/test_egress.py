"""Web access through the egress proxy: real Squid, real Docker networks, a test
"internet" on a network the test creates (tests/support/egress.py).

What a sandbox with web access can do (fetch a page and an API, an HTTPS-style
CONNECT tunnel), everything it must not reach (each refusal recorded with its
reason), and that nothing but the proxy answers a socket that ignores it.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from sandbox.docker_backend import DockerSandbox
from sandbox.image_tag import image_tag
from tests.sandbox.conftest import TEST_LIMITS, SandboxBackend, assert_unharmed, text_of
from tests.sandbox.test_hostile import network_probe
from tests.support.egress import (
    DEPLOYMENT_HOST,
    SITE,
    EgressProxy,
    Internet,
    egress_proxy,
    internet_of_tests,
)

pytestmark = pytest.mark.integration

LIMITS = replace(TEST_LIMITS, cell_timeout=60.0)


@pytest.fixture(scope="module")
def backend(docker_backend: SandboxBackend) -> SandboxBackend:
    """Docker only: the egress network and proxy are Docker's here."""
    return docker_backend


@pytest.fixture(scope="module")
def internet(client: Any) -> Iterator[Internet]:
    with internet_of_tests(client) as made:
        yield made


@pytest.fixture(scope="module")
def proxy(client: Any, internet: Internet) -> Iterator[EgressProxy]:
    with egress_proxy(client) as made:
        yield made


def web_sandbox(client: Any, runtime: str, proxy: EgressProxy) -> DockerSandbox:
    box = DockerSandbox(
        client,
        image_tag(),
        LIMITS,
        {"codeact.conversation": "egress-test", "codeact.test": "1"},
        runtime=None if runtime == "runc" else runtime,
        web=proxy.access,
    )
    if not box.warm.wait(90):
        box.close()
        raise AssertionError("the sandbox's kernel did not start")
    proxy.reset(box.address)
    return box


@pytest.fixture(scope="module")
def web_box(client: Any, runtime: str, proxy: EgressProxy) -> Iterator[DockerSandbox]:
    box = web_sandbox(client, runtime, proxy)
    yield box
    box.close()


@pytest.fixture
def fresh_box(client: Any, proxy: EgressProxy) -> Iterator[DockerSandbox]:
    """A sandbox of its own (under runc: the policy does not depend on the runtime),
    for tests that use up its rate or budget."""
    box = web_sandbox(client, "runc", proxy)
    yield box
    box.close()


def run(box: DockerSandbox, code: str) -> str:
    result = box.execute(textwrap.dedent(code))
    errors = [f"{o['ename']}: {o['evalue']}" for o in result.outputs if o["output_type"] == "error"]
    assert result.status == "ok", (result.status, errors, text_of(result))
    return text_of(result)


def by_url(records: list[Any]) -> dict[str, Any]:
    return {r.target: r for r in records}


def test_a_page_and_an_api_are_fetched_and_recorded(web_box, proxy):
    out = run(
        web_box,
        """
        import requests, pandas as pd
        from bs4 import BeautifulSoup
        page = requests.get("http://site.test/table.html", timeout=10)
        rows = BeautifulSoup(page.text, "html.parser").select("#cities tbody tr")
        table = pd.DataFrame([[td.text for td in tr.find_all("td")] for tr in rows],
                             columns=["city", "population", "area"])
        api = pd.read_json("http://site.test/api/items")  # urllib: the proxy variables
        items = pd.DataFrame(api["items"].tolist())
        print(page.status_code, len(table), table.city.tolist())
        print(int(items.population.sum()))
        """,
    )
    assert "200 3 ['Lisbon', 'Porto', 'Braga']" in out
    assert "970000" in out
    records = by_url(proxy.requests_of(web_box.address))
    page = records["http://site.test/table.html"]
    api = records["http://site.test/api/items"]
    for record in (page, api):
        assert record.method == "GET" and record.status == 200 and not record.refusal
        assert record.server == SITE and record.client == web_box.address
    assert page.reply_bytes > 300


def test_a_tunnel_goes_through_connect_untouched(web_box, proxy):
    # The test site speaks plain HTTP on 443 too: through a CONNECT tunnel the
    # proxy passes bytes without reading them (no TLS interception).
    out = run(
        web_box,
        """
        import http.client, os
        from urllib.parse import urlsplit
        proxy = urlsplit(os.environ["HTTPS_PROXY"])
        conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=10)
        conn.set_tunnel("site.test", 443)
        conn.request("GET", "/echo")
        seen = conn.getresponse().read().decode()
        conn.close()
        print(seen)
        """,
    )
    seen = json.loads(out)
    assert seen["path"] == "/echo"
    assert "Via" not in seen["headers"] and "X-Forwarded-For" not in seen["headers"]
    tunnel = by_url(proxy.requests_of(web_box.address))["https://site.test"]
    assert tunnel.method == "CONNECT" and tunnel.status == 200 and not tunnel.refusal


def test_nothing_but_the_proxy_answers_a_socket(backend, neighbour, web_box, proxy):
    gateway = proxy.net.gateway
    out = run(
        web_box,
        network_probe(
            {
                "site-direct": (SITE, 80),
                "deployment-direct": (DEPLOYMENT_HOST, 80),
                "host-ssh": (gateway, 22),
                "host-postgres-on-bridge": (gateway, 5432),
                "host-web-on-bridge": (gateway, 8000),
                "host-model-on-bridge": (gateway, 8081),
                "the-proxy": (gateway, proxy.policy.listen_port),
            }
        ),
    )
    outcome = json.loads(out)
    assert outcome.pop("the-proxy") == "connected"
    assert "connected" not in outcome.values(), outcome
    assert outcome["dns"] != "resolved"
    dns = run(
        web_box,
        """
        import socket
        name = b"\\x07example\\x03com\\x00"
        query = bytes.fromhex("abcd01000001000000000000") + name + b"\\x00\\x01\\x00\\x01"
        for server in ("127.0.0.11", "198.51.100.10", "8.8.8.8"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            try:
                s.sendto(query, (server, 53))
                data = s.recv(512)
                answers = int.from_bytes(data[6:8], "big")
                print(server, "answers", answers)
            except OSError as exc:
                print(server, type(exc).__name__)
        """,
    )
    # Docker's resolver in the container may answer, but finds nothing outside.
    assert "answers 1" not in dns and "answers 2" not in dns, dns
    assert_unharmed(backend, neighbour)


REFUSED = {
    # what the code asks for: the reason the record must give
    "http://127.0.0.1:6379/": "blocked: port not allowed",  # Redis
    "http://127.0.0.1:5432/": "blocked: port not allowed",  # PostgreSQL
    "http://127.0.0.1:8081/v1/models": "blocked: port not allowed",  # the bundled model
    "http://127.0.0.1:8000/": "blocked: port not allowed",  # the web app
    "http://127.0.0.1/": "blocked: private address",
    "http://localhost/": "blocked: private address",
    "http://[::1]/": "blocked: private address",
    "http://169.254.169.254/latest/meta-data/": "blocked: private address",
    "http://metadata.test/latest/meta-data/": "blocked: private address",
    "http://10.1.2.3/": "blocked: private address",
    "http://loopback.test/": "blocked: private address",  # a name resolving to loopback
    "http://private.test/": "blocked: private address",
    "http://models.test/v1/models": "blocked: a host of this service",
    f"http://{DEPLOYMENT_HOST}/": "blocked: a host of this service",
    "https://site.test:22/": "blocked: port not allowed",  # CONNECT to 22
    "https://site.test:5432/": "blocked: port not allowed",  # CONNECT to 5432
    "https://10.1.2.3/": "blocked: private address",  # CONNECT to a private address
}


def test_every_forbidden_destination_is_refused_and_recorded(backend, neighbour, fresh_box, proxy):
    urls = [*REFUSED, f"http://{proxy.net.gateway}/", "http://no-such-name.test/"]
    out = run(
        fresh_box,
        f"""
        import json, os, requests
        # Through the proxy even where NO_PROXY says otherwise (127.0.0.1 and localhost
        # are the sandbox's own loopback, reached directly).
        session = requests.Session()
        session.trust_env = False
        session.proxies = {{"http": os.environ["HTTP_PROXY"], "https": os.environ["HTTPS_PROXY"]}}
        seen = {{}}
        for url in {urls!r}:
            try:
                reply = session.get(url, timeout=10)
                seen[url] = [reply.status_code, reply.text[:200]]
            except requests.RequestException as exc:
                seen[url] = [type(exc).__name__, str(exc)[:200]]
        redirected = session.get("http://site.test/to-private", timeout=10)
        seen["redirect"] = [redirected.status_code, redirected.text[:200]]
        print(json.dumps(seen))
        """,
    )
    seen = json.loads(out)
    # Plain HTTP: the proxy's 403 page says why; HTTPS: the tunnel is refused.
    assert seen["http://127.0.0.1/"][0] == 403
    assert "blocked: private address" in seen["http://127.0.0.1/"][1]
    assert seen["https://site.test:22/"][0] == "ProxyError"
    assert seen["redirect"][0] == 403 and "blocked: private address" in seen["redirect"][1]
    records = proxy.requests_of(fresh_box.address)
    reasons = {r.target: r.refusal for r in records}
    for url, reason in REFUSED.items():
        target = url
        if url.startswith("https://"):
            host_port = url.removeprefix("https://").rstrip("/")
            target = "https://" + host_port.removesuffix(":443")
        assert reasons.get(target) == reason, (url, reasons)
    assert reasons[f"http://{proxy.net.gateway}/"] == "blocked: private address"
    # The redirect itself was allowed; where it pointed was not.
    assert reasons["http://site.test/to-private"] == ""
    assert reasons["http://10.1.2.3/"] == "blocked: private address"
    assert all(not r.server for r in records if r.refusal)  # never connected
    # A name that does not resolve is a failure, not a refusal (which failure depends
    # on the machine's resolver: "name not found", or a read error from it here).
    unknown = by_url(records)["http://no-such-name.test/"]
    assert unknown.outcome.startswith("failed:") and not unknown.refusal and not unknown.server
    assert_unharmed(backend, neighbour)


def test_a_reply_over_the_size_cap_is_refused(fresh_box, proxy):
    out = run(
        fresh_box,
        """
        import requests
        known = requests.get("http://site.test/bytes/2000000", timeout=20)
        print("known", known.status_code, known.text[:60])
        try:
            streamed = requests.get("http://site.test/stream/2000000", timeout=20)
            print("streamed", streamed.status_code, len(streamed.content))
        except requests.RequestException as exc:
            print("streamed", type(exc).__name__)
        small = requests.get("http://site.test/bytes/1000", timeout=20)
        print("small", small.status_code, len(small.content))
        """,
    )
    assert "known 403" in out
    assert "small 200 1000" in out
    streamed_line = next(line for line in out.splitlines() if line.startswith("streamed"))
    # Cut off once it passes the cap: never the whole 2 MB.
    assert "2000000" not in streamed_line, out
    records = proxy.requests_of(fresh_box.address)
    assert "http://site.test/bytes/2000000" in by_url(records), (out, records)
    known = by_url(records)["http://site.test/bytes/2000000"]
    assert known.refusal == "blocked: response over the size limit"
    streamed = by_url(records)["http://site.test/stream/2000000"]
    assert streamed.reply_bytes <= (1 << 20) + 65536 * 2
    assert streamed.refusal == "blocked: response over the size limit"


def test_a_flood_is_held_to_the_rate_limit(fresh_box, proxy):
    out = run(
        fresh_box,
        """
        import requests
        codes = [requests.get("http://site.test/api/items", timeout=10).status_code
                 for _ in range(80)]
        print(codes.count(200), codes.count(403))
        """,
    )
    allowed, refused = map(int, out.split())
    assert allowed <= proxy.policy.requests_per_minute
    assert refused >= 80 - proxy.policy.requests_per_minute
    records = proxy.requests_of(fresh_box.address)
    assert sum(r.refusal == "blocked: too many requests" for r in records) == refused


def test_the_byte_budget_ends_downloads(fresh_box, proxy):
    out = run(
        fresh_box,
        """
        import requests
        codes = [requests.get("http://site.test/bytes/900000", timeout=10).status_code
                 for _ in range(14)]
        print(codes)
        """,
    )
    codes = json.loads(out)
    assert 403 in codes and codes[0] == 200
    first_refused = codes.index(403)
    assert all(code == 403 for code in codes[first_refused:])
    budget = proxy.policy.budget_bytes
    assert (first_refused - 1) * 900_000 <= budget + 900_000
    records = proxy.requests_of(fresh_box.address)
    assert any(r.refusal == "blocked: download budget used up" for r in records)


@pytest.fixture(scope="module")
def listed_proxy(client: Any, internet: Internet) -> Iterator[EgressProxy]:
    with egress_proxy(
        client, allow_domains=("site.test",), deny_domains=("www.site.test",)
    ) as made:
        yield made


def test_allow_and_deny_lists(client, listed_proxy):
    box = web_sandbox(client, "runc", listed_proxy)
    try:
        out = run(
            box,
            """
            import requests
            for url in ("http://site.test/api/items", "http://other.test/api/items",
                        "http://www.site.test/api/items", f"http://198.51.100.10/api/items"):
                print(url, requests.get(url, timeout=10).status_code)
            """,
        )
        reasons = {r.target: r.refusal for r in listed_proxy.requests_of(box.address)}
    finally:
        box.close()
    assert "http://site.test/api/items 200" in out
    assert reasons["http://site.test/api/items"] == ""
    assert reasons["http://other.test/api/items"] == "blocked: not on the allowlist"
    assert reasons["http://www.site.test/api/items"] == "blocked: on the denylist"
    # An address is not a name on the allowlist.
    assert reasons["http://198.51.100.10/api/items"] == "blocked: not on the allowlist"
