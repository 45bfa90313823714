"""The production settings documented in the README pass `check --deploy`, and the
audit trail's address is the client's behind a trusted proxy."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import RequestFactory

from codeact_web.proxy import client_ip

ROOT = Path(__file__).resolve().parents[2]


def documented_production_env() -> dict[str, str]:
    """The KEY=value lines of the README's production block."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- production-settings -->\s*```sh\n(.*?)```", readme, re.S)
    assert block, "README has no production settings block"
    pairs = (line.split("=", 1) for line in block.group(1).splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def test_it_passes_check_deploy_with_the_documented_production_settings(tmp_path):
    env = documented_production_env()
    assert env["SECURE_SSL_REDIRECT"] and env["SECURE_HSTS_SECONDS"]
    key_file = tmp_path / "secret_key"
    key_file.write_text(secrets.token_urlsafe(50))
    env |= {"SECRET_KEY_FILE": str(key_file), "PATH": "/usr/bin:/bin"}
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert "System check identified no issues" in checked.stdout


def run_manage(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    key_file = tmp_path / "secret_key"
    key_file.write_text(secrets.token_urlsafe(50))
    env = env | {"SECRET_KEY_FILE": str(key_file), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_production_profile_alone_passes_check_deploy(tmp_path):
    """CODEACT_PROFILE=production (what the Compose deployment sets) needs nothing
    else but the site's name and a key: `check --deploy` prints no issue at all."""
    env = {"CODEACT_PROFILE": "production", "ALLOWED_HOSTS": "chat.example.org"}
    checked = run_manage(env, tmp_path, "check", "--deploy", "--fail-level", "DEBUG")

    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert checked.stdout.strip() == "System check identified no issues (0 silenced)."


def test_it_logs_one_json_object_per_line_when_asked(tmp_path):
    env = {"CODEACT_LOG_FORMAT": "json"}
    script = "import logging; logging.getLogger('codeact.probe').warning('hello %s', 'there')"
    logged = run_manage(env, tmp_path, "shell", "-c", script)

    assert logged.returncode == 0, logged.stderr
    line = json.loads(logged.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello there"
    assert line["level"] == "WARNING" and line["logger"] == "codeact.probe"
    assert line["process"] == "shell" and line["time"]


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),  # through the trusted proxy
        ("10.0.0.5", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # a forged first hop
        ("10.0.0.5", "203.0.113.7, 10.0.0.9", "203.0.113.7"),  # two trusted proxies
        ("198.51.100.1", "203.0.113.7", "198.51.100.1"),  # not a proxy: header ignored
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", "not-an-address", "10.0.0.5"),
    ],
)
def test_it_takes_the_client_address_from_trusted_proxies_only(
    settings, remote, forwarded, expected
):
    settings.CODEACT_TRUSTED_PROXIES = ["10.0.0.0/24"]
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected
