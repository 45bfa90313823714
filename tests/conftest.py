from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from codeact_web.asgi import application
from tests import envplugin
from tests.factories import UserFactory
from tests.support.processes import Process, start_worker
from tests.support.scripted_model import ScriptedModelServer


@pytest.fixture
def owner(db: None) -> Any:
    return UserFactory(username="owner")


@pytest.fixture
def other_user(db: None) -> Any:
    return UserFactory(username="mallory")


@pytest.fixture
def staff(db: None) -> Any:
    return UserFactory(username="staff", is_staff=True)


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedModelServer]:
    server = ScriptedModelServer()
    server.port = envplugin.SCRIPTED_MODEL_PORT
    server.start()
    yield server
    server.stop()


@pytest.fixture
def model_server(scripted_server: ScriptedModelServer) -> Iterator[ScriptedModelServer]:
    """The suite's scripted model, with an empty script queue for this test."""
    scripted_server.reset()
    if scripted_server._server is None:
        scripted_server.resume()
    yield scripted_server
    scripted_server.reset()
    if scripted_server._server is None:
        scripted_server.resume()


def scripted_endpoint(url: str) -> dict[str, str]:
    """A model endpoint configuration, with a key that must never show in an answer."""
    return {"key": "default", "base_url": url, "model": "scripted", "api_key": "sk-never-shown"}


@pytest.fixture
def health_settings(settings: Any, model_server: ScriptedModelServer) -> Iterator[Any]:
    """The scripted model as the one endpoint (the suite also lists a llama.cpp one
    that is not running), and health reports under a key prefix of this test's own."""
    import uuid

    from chat import live

    settings.CODEACT_MODELS = [scripted_endpoint(model_server.url)]
    settings.CHANNEL_PREFIX = f"{envplugin.RUN_ID}-health-{uuid.uuid4().hex[:8]}"
    yield settings
    if keys := live.redis_client().keys(f"{settings.CHANNEL_PREFIX}:health:*"):
        live.redis_client().delete(*keys)


@pytest.fixture(scope="session")
def _workers(django_db_setup: None, scripted_server: Any) -> Iterator[list[Process]]:
    procs: list[Process] = []
    yield procs
    for proc in procs:
        proc.stop()


def ensure_worker(workers: list[Process]) -> Process:
    if not workers or workers[-1].proc.poll() is not None:
        workers.append(start_worker())
    return workers[-1]


@pytest.fixture
def worker(_workers: list[Process]) -> Process:
    """A real Celery worker process on the test database and a per-run queue.

    Shared by the session; started again if a test killed it.
    """
    return ensure_worker(_workers)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[tuple[str, str]]:
    """The bundled SmolLM2 model served by llama.cpp (the `bundled` model of the suite)."""
    import socket
    import subprocess
    import time

    from codeact_web.bundled_model import MODEL_ALIAS, server_command

    port = envplugin.LLAMA_PORT
    proc = subprocess.Popen(
        server_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/v1", MODEL_ALIAS
    proc.terminate()
    proc.wait(10)


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class Socket:
    """A websocket client on the real ASGI application, with helpers to read frames."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.frames: list[dict[str, Any]] = []
        self.parts: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame; a large one sent in `part` frames is joined (as socket.js
        does) and its parts are kept in `parts`."""
        texts: list[str] = []
        while True:
            frame = json.loads(await self.communicator.receive_from(timeout))
            if frame["type"] != "part":
                break
            self.parts.append(frame)
            texts.append(frame["text"])
            if frame["last"]:
                frame = json.loads("".join(texts))
                break
        self.frames.append(frame)
        return frame

    async def receive_until(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching frame; got {self.frames[-10:]}")
            frame = await self.receive(remaining)
            if predicate(frame):
                return frame

    async def turn_finished(self, timeout: float = 15.0) -> dict[str, Any]:
        return await self.receive_until(
            lambda f: f["type"] == "turn" and f["turn"]["status"] not in ("queued", "running"),
            timeout,
        )


@asynccontextmanager
async def open_socket(
    user: Any, conversation_id: Any, origin: str = "http://127.0.0.1"
) -> AsyncIterator[Socket]:
    from channels.db import database_sync_to_async

    cookie = await database_sync_to_async(session_cookie)(user) if user is not None else ""
    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation_id}/", headers=headers
    )
    connected, _ = await communicator.connect(timeout=5)
    socket = Socket(communicator)
    socket.connected = connected  # type: ignore[attr-defined]
    try:
        yield socket
    finally:
        await communicator.disconnect()


@pytest.fixture(scope="session", autouse=True)
def _remove_this_runs_containers() -> Iterator[None]:
    """Sandboxes a test left behind (a failure, a browser test) go with the run."""
    yield
    import docker

    from sandbox.docker_backend import docker_client, managed_containers

    try:
        for container in managed_containers(
            docker_client(), **{"codeact.deployment": envplugin.RUN_ID}
        ):
            container.remove(force=True)
    except docker.errors.DockerException:  # no Docker engine in a unit-only run
        pass


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Browser tests last: they are the slowest, and Playwright's sync API holds
    an event loop in the main thread while a browser is open."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture
def remove_sandboxes() -> Iterator[None]:
    """After the test, remove every live sandbox it left (modules that run real
    turns use it for each test: `pytest.mark.usefixtures("remove_sandboxes")`)."""
    from chat.models import SandboxRecord
    from chat.worker import pool

    yield
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")
