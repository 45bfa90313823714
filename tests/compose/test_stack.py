"""The Compose deployment, used from outside as a browser and an operator would:
everything goes through the reverse proxy over HTTPS (its self-signed
certificate is trusted, nothing else), and the operator's steps are `docker
compose` commands. The tests share one stack and run in file order: the last
ones kill a worker and take the stack down and up again."""

from __future__ import annotations

import asyncio
import re
import socket
import textwrap
from typing import Any

import pytest
import requests

from tests.compose.conftest import Stack, wait_ready
from tests.support.page_client import PageClient

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

PLOT = textwrap.dedent(
    """\
    import pandas as pd
    import matplotlib.pyplot as plt
    frame = pd.read_csv('sales.csv')
    print('total', frame['units'].sum())
    frame.plot(x='day', y='units')
    plt.show()
    """
)


def step(code: str) -> dict[str, Any]:
    return {"text": f"I will run this.\n<execute>\n{code}</execute>"}


class User:
    """A person who signed up through the proxy, with one conversation."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.stack = stack
        self.session = stack.browser()
        page = self.session.get(f"{stack.site}/accounts/signup/", timeout=30)
        assert page.status_code == 200, page.text[:500]
        password = "A long enough passphrase 42"
        signed_up = self.session.post(
            f"{stack.site}/accounts/signup/",
            data={
                "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
                "username": name,
                "password1": password,
                "password2": password,
            },
            timeout=30,
        )
        assert signed_up.url == f"{stack.site}/", signed_up.text[:2000]
        made = self.post("/c/new/", {})
        match = re.search(r"/c/([0-9a-f-]{36})/$", made.url)
        assert match, made.url
        self.conversation = match.group(1)

    def post(self, path: str, data: dict[str, Any], **kwargs: Any) -> requests.Response:
        token = self.session.cookies["csrftoken"]
        return self.session.post(
            f"{self.stack.site}{path}",
            data=data | {"csrfmiddlewaretoken": token},
            headers={"X-CSRFToken": token},
            timeout=120,
            **kwargs,
        )

    def page(self) -> PageClient:
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        return PageClient(
            self.stack.https_port,
            cookie,
            self.conversation,
            site=self.stack.site,
            tls=self.stack.tls(),
        )

    def turn(self, text: str, timeout: float = 180) -> PageClient:
        """Send a message from a page and read until every turn has ended."""

        async def run() -> PageClient:
            page = self.page()
            await page.connect()
            await page.pump_until(lambda p: not p.resume_pending, 30)
            turns = len(page.rows["turn"])
            await page.send({"type": "user_message", "text": text, "client_id": "c1"})
            await page.pump_until(lambda p: p.turns_final(turns + 1), timeout)
            await page.close()
            return page

        return asyncio.run(run())


@pytest.fixture(scope="session")
def user(stack: Stack) -> User:
    return User(stack, "ada")


def answers(page: PageClient) -> list[str]:
    return [m["content"] for m in page.rows["message"].values() if m["role"] == "assistant"]


def test_it_serves_https_and_redirects_plain_http(stack: Stack) -> None:
    http_port = stack.env["CODEACT_HTTP_PORT"]
    plain = requests.get(f"http://localhost:{http_port}/accounts/login/", allow_redirects=False)
    assert plain.status_code == 308
    assert plain.headers["location"] == f"{stack.site}/accounts/login/"
    page = requests.get(f"{stack.site}/accounts/login/", verify=stack.certificate(), timeout=30)
    assert page.status_code == 200
    assert page.headers["strict-transport-security"].startswith("max-age=")
    # The static files the page names have hashed names: cached for a year by
    # browsers, and by the proxy after the first request.
    css = re.search(r'href="(/static/chat/app\.[0-9a-f]{12}\.css)"', page.text)
    assert css, "the page does not name a hashed stylesheet"
    sheets = [
        requests.get(stack.site + css.group(1), verify=stack.certificate(), timeout=30)
        for _ in range(2)
    ]
    assert all(sheet.status_code == 200 for sheet in sheets)
    cache = sheets[1].headers["cache-control"]
    assert "immutable" in cache and int(re.search(r"max-age=(\d+)", cache)[1]) >= 31536000
    assert sheets[1].headers["x-cache"] == "HIT"


def test_a_new_user_gets_a_streamed_answer(stack: Stack, user: User) -> None:
    reply = "Hello through the proxy, one token at a time, over a secure socket."
    stack.push({"text": reply, "delay": 0.05})
    page = user.turn("Say hello")
    assert list(page.turn_statuses().values()) == ["done"]
    assert answers(page) == [reply]
    assert page.deltas >= 3, "the answer arrived whole, not streamed"


def test_a_cell_reads_an_upload_and_draws_a_plot(stack: Stack, user: User) -> None:
    rows = "day,units\n" + "".join(f"{day},{day * 3}\n" for day in range(1, 11))
    uploaded = user.post(
        f"/c/{user.conversation}/files/", {}, files={"file": ("sales.csv", rows.encode())}
    )
    assert uploaded.status_code == 201, uploaded.text
    stack.push(step(PLOT), {"text": "Sold 165 units; the plot is above."})
    page = user.turn("Plot the units by day")
    assert list(page.turn_statuses().values())[-1] == "done"
    outputs = list(page.rows["output"].values())
    assert any(o["text"] == "total 165\n" for o in outputs), outputs
    image = next(o for o in outputs if o["image_url"])
    png = user.session.get(stack.site + image["image_url"], timeout=30)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_the_admin_works_and_audits_the_client_not_the_proxy(stack: Stack) -> None:
    admin = stack.browser()
    admin.get(f"{stack.site}/admin/login/", timeout=30)
    logged_in = admin.post(
        f"{stack.site}/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": admin.cookies["csrftoken"],
            "username": "admin",
            "password": stack.secret("admin_password"),
        },
        timeout=30,
    )
    assert logged_in.url == f"{stack.site}/admin/", logged_in.text[:1000]
    assert "CodeAct Web administration" in logged_in.text
    listing = admin.get(f"{stack.site}/admin/chat/message/", timeout=30)
    assert listing.status_code == 200
    # The list page is audited with the address the proxy saw connect (the
    # network's gateway, for a client on this host), not the proxy's own.
    recorded = stack.sql("SELECT ip FROM chat_auditrecord ORDER BY id DESC LIMIT 1")
    assert recorded == stack.env["CODEACT_SUBNET_GATEWAY"]
    assert stack.container_address("proxy") == stack.env["CODEACT_PROXY_ADDRESS"]


def test_bodies_over_the_limit_are_refused_by_the_proxy(stack: Stack, user: User) -> None:
    # 2 MiB to the login form: over CODEACT_MAX_BODY_KB (1 MiB).
    big = user.session.post(
        f"{stack.site}/accounts/login/", data={"x": "y" * (2 * 1024 * 1024)}, timeout=60
    )
    assert big.status_code == 413 and "nginx" in big.headers.get("server", "")
    # An upload declared at 300 MB is refused from its headers, before any body.
    status = declared_body_status(stack, f"/c/{user.conversation}/files/", 300 * 1024 * 1024)
    assert status == 413


def declared_body_status(stack: Stack, path: str, length: int) -> int:
    """The status answered to a POST that declares `length` bytes and sends none."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: localhost:{stack.https_port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    )
    with (
        socket.create_connection(("127.0.0.1", stack.https_port), timeout=30) as raw,
        stack.tls().wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        conn.sendall(request.encode())
        head = conn.recv(4096).decode("latin1")
    return int(head.split()[1])


APP_BODY_PROBE = textwrap.dedent(
    """\
    import http.client, socket

    def rss():
        return int(next(l for l in open('/proc/1/status') if l.startswith('VmRSS')).split()[1])

    before = rss()
    # 600 MB declared, then 64 MiB actually sent, straight to Daphne (no proxy).
    conn = http.client.HTTPConnection('127.0.0.1', 8000, timeout=60)
    conn.putrequest('POST', '/accounts/login/', skip_host=True)
    conn.putheader('Host', 'web')
    conn.putheader('X-Forwarded-Proto', 'https')
    conn.putheader('Content-Type', 'application/x-www-form-urlencoded')
    conn.putheader('Content-Length', str(600 * 1024 * 1024))
    conn.endheaders()
    sent = 0
    try:
        while sent < 64 * 1024 * 1024:
            conn.send(b'x' * 65536)
            sent += 65536
    except OSError:
        pass
    try:
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        status = 'closed'
    print(status, sent, before, rss())
    """
)


def test_the_app_refuses_an_oversized_body_before_buffering_it(stack: Stack) -> None:
    """Without the proxy (from inside the web container, to Daphne itself): the
    declared length is refused at the headers and the process does not grow."""
    status, sent, before_kib, after_kib = stack.run_in(
        "web", "python", "-c", APP_BODY_PROBE
    ).split()
    growth_mib = (int(after_kib) - int(before_kib)) / 1024
    print(
        f"{int(sent) >> 20} MiB sent before the answer; "
        f"web RSS {int(before_kib) / 1024:.1f} MiB -> {int(after_kib) / 1024:.1f} MiB"
    )
    assert status == "413"
    assert growth_mib < 16


def test_check_deploy_is_clean_in_the_web_container(stack: Stack) -> None:
    checked = stack.run_in("web", "python", "manage.py", "check", "--deploy", "--fail-level=DEBUG")
    assert "System check identified no issues" in checked


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        sample_name, _, rest = sample.partition("{")
        found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample_name == name and found == wanted:
            return float(value)
    return 0.0


METRICS_FROM = (
    "import urllib.request, sys\n"
    "request = urllib.request.Request('http://{host}:8000/metrics', headers={{'Host': 'web'}})\n"
    "try:\n"
    "    print(urllib.request.urlopen(request, timeout=10).read().decode())\n"
    "except urllib.error.HTTPError as exc:\n"
    "    print('HTTP', exc.code)\n"
)


def test_metrics_move_after_a_turn_and_are_refused_outside_the_allow_list(
    stack: Stack, user: User
) -> None:
    def scrape() -> str:
        return stack.run_in("web", "python", "-c", METRICS_FROM.format(host="127.0.0.1"))

    before = metric(scrape(), "codeact_turns_total", status="done")
    stack.push({"text": "Counted."})
    user.turn("Count this turn")
    after = scrape()
    assert metric(after, "codeact_turns_total", status="done") == before + 1
    assert metric(after, "codeact_time_to_first_token_seconds_count") >= 1
    # The beat container is on the same network but not in the allow-list.
    outside = stack.run_in("beat", "python", "-c", METRICS_FROM.format(host="web"))
    assert outside.strip() == "HTTP 403"
    # Through the proxy, without a token: refused at the proxy.
    proxied = requests.get(f"{stack.site}/metrics", verify=stack.certificate(), timeout=30)
    assert proxied.status_code == 403


def test_tls_is_the_proxys_certificate(stack: Stack) -> None:
    with (
        socket.create_connection(("127.0.0.1", stack.https_port), timeout=30) as raw,
        stack.tls().wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(stack.site, timeout=30, verify=True)  # not a public CA's


def test_a_worker_killed_mid_turn_leaves_the_turn_interrupted_and_the_next_works(
    stack: Stack, user: User
) -> None:
    stack.push({"text": "word " * 400, "delay": 0.1})

    async def kill_mid_turn() -> PageClient:
        page = user.page()
        await page.connect()
        await page.pump_until(lambda p: not p.resume_pending, 30)
        turns = len(page.rows["turn"])
        await page.send({"type": "user_message", "text": "A long answer, please", "client_id": "k"})
        await page.pump_until(lambda p: p.deltas >= 5, 120)
        await asyncio.to_thread(stack.compose, "kill", "worker")
        # The operator (or the restart policy) brings a worker back; its sweeper
        # finds the dead worker's lease lapsed and ends the turn.
        await asyncio.to_thread(stack.up, "worker")
        await page.pump_until(lambda p: p.turns_final(turns + 1), 120)
        await page.close()
        return page

    page = asyncio.run(kill_mid_turn())
    assert list(page.turn_statuses().values())[-1] == "interrupted"
    assert stack.sql("SELECT status FROM chat_turn ORDER BY id DESC LIMIT 1") == "interrupted"
    stack.push({"text": "Back again."})
    again = user.turn("Are you there?")
    assert list(again.turn_statuses().values())[-1] == "done"
    assert answers(again)[-1] == "Back again."


def test_the_conversation_outlives_down_and_up(stack: Stack, user: User) -> None:
    stack.compose("down", timeout=300)
    stack.up()
    wait_ready(stack)
    page = user.session.get(f"{stack.site}/c/{user.conversation}/", timeout=30)
    assert page.status_code == 200  # the session (in PostgreSQL) is still valid
    assert "Back again." in page.text and "Sold 165 units" in page.text
    stack.push({"text": "Still here."})
    after = user.turn("And after a restart?")
    assert answers(after)[-1] == "Still here."
