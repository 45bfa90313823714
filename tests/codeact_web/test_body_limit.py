"""Request body limits against a real Daphne process: an oversized body is
refused before the server stores it (codeact_web/body_limit.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.testing import HttpCommunicator

from codeact_web.asgi import application
from codeact_web.body_limit import body_limit_for
from tests.support.processes import Process, free_port, start_web

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

SMALL_LIMIT_KB = 64
UPLOAD_LIMIT_MB = 2
MiB = 1 << 20


@pytest.fixture
def web() -> Iterator[tuple[Process, int]]:
    port = free_port()
    proc = start_web(
        port,
        CODEACT_MAX_BODY_KB=str(SMALL_LIMIT_KB),
        CODEACT_MAX_UPLOAD_BODY_MB=str(UPLOAD_LIMIT_MB),
    )
    yield proc, port
    proc.stop()


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def request_head(port: int, extra: str) -> bytes:
    return (
        f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{extra}\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def get_login_page(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        return sock.recv(100)


def test_it_refuses_a_4_gib_declared_body_before_reading_it(web):
    _, port = web
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request_head(port, f"Content-Length: {4 << 30}\r\n"))
        answer = read_answer(sock)  # the server answers without waiting for the body

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"The request is too large: this address accepts at most 64 KB." in answer


def test_it_answers_an_oversized_upload_in_json_the_page_can_show(web):
    _, port = web
    upload = "/c/6f1c4c44-2f2b-4b43-9d5c-5d7f3a0c2b1e/files/"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"POST {upload} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {UPLOAD_LIMIT_MB * MiB + 1}\r\n\r\n".encode()
        )
        head, _, body = read_answer(sock).partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 413 ") and b"application/json" in head
    assert json.loads(body)["error"] == {
        "code": "request_too_large",
        "message": f"The request is too large: this address accepts at most {UPLOAD_LIMIT_MB} MB.",
    }


def test_it_cuts_off_a_chunked_body_past_the_limit_without_growing(web):
    proc, port = web
    assert get_login_page(port).startswith(b"HTTP/1.1 200")
    before = peak_rss(proc.proc.pid)
    chunk = b"%x\r\n%s\r\n" % (MiB, b"a" * MiB)
    total, sent = 64, 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_head(port, "Transfer-Encoding: chunked\r\n"))
        try:
            for _ in range(total):
                sock.sendall(chunk)
                sent += 1
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(sock)

    assert sent < total, f"the server read all {total} MiB: {answer[:200]!r}"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413 ")
    grown = peak_rss(proc.proc.pid) - before
    assert grown < 16 * MiB, f"the web process grew by {grown / MiB:.0f} MiB"
    # The server goes on serving.
    assert get_login_page(port).startswith(b"HTTP/1.1 200")


def test_it_gives_uploads_the_upload_limit_and_other_routes_the_small_one(settings):
    upload = "/c/6f1c4c44-2f2b-4b43-9d5c-5d7f3a0c2b1e/files/"
    assert body_limit_for(upload) == settings.CODEACT_MAX_UPLOAD_BODY_BYTES
    assert body_limit_for("/accounts/login/") == settings.CODEACT_MAX_BODY_BYTES
    assert body_limit_for("/no/such/page/") == settings.CODEACT_MAX_BODY_BYTES
    assert (
        settings.CODEACT_MAX_UPLOAD_BODY_BYTES
        > (settings.CODEACT_UPLOAD_MAX_MB * MiB)
        > settings.CODEACT_MAX_BODY_BYTES
    )


async def test_it_refuses_an_undeclared_body_in_the_asgi_app_too(settings):
    # Servers that stream bodies to the application (uvicorn, hypercorn) meet
    # the same limit in the ASGI middleware; no Content-Length is sent here.
    settings.CODEACT_MAX_BODY_BYTES = 1024
    communicator = HttpCommunicator(application, "POST", "/accounts/login/", body=b"a" * 2048)
    response = await communicator.get_response()

    assert response["status"] == 413
    assert b"at most 1 KB" in response["body"]
