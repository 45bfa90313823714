"""The compose tier (`make compose-test`): the deployment of docker-compose.yml,
run from the images `make images` built, under a project name, ports, network
and secrets of its own, and driven from outside through the reverse proxy over
HTTPS. The model is the scripted server (tests/compose/compose.test.yml), its
replies queued by the tests. It takes minutes and needs Docker Compose v2, so a
plain `pytest` / `make test` skips it unless CODEACT_COMPOSE=1."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "tests" / "compose" / "compose.test.yml"]
SUBNET = "172.31.251.0/24"  # beside a deployment on the default 172.31.250.0/24


def pytest_runtest_setup(item: Any) -> None:
    if item.get_closest_marker("compose") and os.environ.get("CODEACT_COMPOSE") != "1":
        pytest.skip("compose tier: run with `make compose-test` (CODEACT_COMPOSE=1)")


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    secrets: Path
    https_port: int
    model_port: int
    log: list[str] = field(default_factory=list)

    @property
    def site(self) -> str:
        return f"https://localhost:{self.https_port}"

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        done = subprocess.run(
            ["docker", "compose", *files, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.log.append(f"$ docker compose {' '.join(args)} -> {done.returncode}")
        if check and done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{done.stderr[-4000:]}")
        return done.stdout

    def up(self, *services: str) -> None:
        self.compose("up", "-d", "--wait", "--wait-timeout", "420", *services)

    def run_in(self, service: str, *command: str, stdin: str | None = None) -> str:
        """A command in a running service's container; its standard output."""
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        done = subprocess.run(
            ["docker", "compose", *files, "exec", "-T", service, *command],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise AssertionError(f"{service}: {command} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def sql(self, query: str) -> str:
        """One value (or rows, tab-separated) from the stack's PostgreSQL."""
        return self.run_in(
            "postgres",
            "sh",
            "-c",
            'PGPASSWORD="$(cat /run/secrets/postgres_password)" '
            'psql -h 127.0.0.1 -U codeact -d codeact -tA -c "$0"',
            query,
        ).strip()

    def push(self, *scripts: dict[str, Any]) -> None:
        """Queue replies on the scripted model container."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.model_port}/v1/_scripts",
            data=json.dumps({"scripts": list(scripts)}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200

    def certificate(self) -> str:
        return str(self.secrets / "tls" / "cert.pem")

    def tls(self) -> ssl.SSLContext:
        """Trusts the proxy's self-signed certificate, and nothing else."""
        return ssl.create_default_context(cafile=self.certificate())

    def browser(self) -> requests.Session:
        """A session that talks HTTPS to the site and sends its Origin, as a page does."""
        session = requests.Session()
        # Not the environment's CA bundle (REQUESTS_CA_BUNDLE would override verify).
        session.trust_env = False
        session.verify = self.certificate()
        session.headers["Origin"] = self.site
        session.headers["Referer"] = self.site + "/"
        return session

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def container_address(self, service: str) -> str:
        container = self.compose("ps", "-q", service).strip()
        out = subprocess.run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                container,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    secrets = tmp_path_factory.mktemp("compose-secrets")
    subprocess.run(["bash", "scripts/compose-secrets", str(secrets)], cwd=ROOT, check=True)
    https_port, model_port = free_port(), free_port()
    env = os.environ | {
        "CODEACT_PROJECT": f"codeact-test-{uuid.uuid4().hex[:8]}",
        "CODEACT_SECRETS_DIR": str(secrets),
        "CODEACT_TLS_DIR": str(secrets / "tls"),
        "CODEACT_BIND": "127.0.0.1",
        "CODEACT_HTTPS_PORT": str(https_port),
        "CODEACT_HTTP_PORT": str(free_port()),
        "CODEACT_REDIS_HOST_PORT": str(free_port()),
        "CODEACT_MODEL_CONTROL_PORT": str(model_port),
        "CODEACT_SUBNET": SUBNET,
        "CODEACT_SUBNET_RANGE": SUBNET.replace(".0/24", ".128/25"),
        "CODEACT_PROXY_ADDRESS": SUBNET.replace(".0/24", ".10"),
        "CODEACT_SUBNET_GATEWAY": SUBNET.replace(".0/24", ".1"),
        "CODEACT_TESTS_DIR": str(ROOT / "tests"),
        # Only the web container itself may read /metrics (the other containers of
        # the network are "outside" for the allow-list test).
        "CODEACT_METRICS_ALLOW": "127.0.0.1/32",
    }
    stack = Stack(env["CODEACT_PROJECT"], env, secrets, https_port, model_port)
    try:
        stack.up()
        wait_ready(stack)
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "200", check=False, timeout=120)
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "compose-stack.log").write_text("\n".join(stack.log) + "\n" + logs)
        stack.compose("down", "--volumes", "--remove-orphans", check=False, timeout=300)
        # The sandboxes the stack's workers started on this engine (labelled with
        # the stack's own deployment name).
        label = f"label=codeact.deployment=compose-{stack.project}"
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True
        ).stdout.split()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)


def wait_ready(stack: Stack, timeout: float = 120) -> None:
    """Until the proxy answers HTTPS and the app says it is ready (a worker reported)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            answer = requests.get(
                f"{stack.site}/health/ready", verify=stack.certificate(), timeout=10
            )
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:300]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(2)
    raise AssertionError(f"the stack did not become ready: {last}")
