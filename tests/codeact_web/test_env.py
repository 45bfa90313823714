import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from codeact_web.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_models,
    env_networks,
    env_ports,
    env_secret,
    env_url_with_password,
)


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("off", False)]
)
def test_it_reads_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG") is expected


def test_it_refuses_a_boolean_it_cannot_read(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be a boolean"):
        env_bool("X_FLAG")


def test_it_uses_defaults_when_unset(monkeypatch):
    monkeypatch.delenv("X_NUM", raising=False)
    assert env_int("X_NUM", 7) == 7
    assert env_float("X_NUM", 0.5) == 0.5
    assert env_bool("X_NUM", True) is True


def test_it_checks_integer_bounds(monkeypatch):
    monkeypatch.setenv("X_NUM", "3")
    with pytest.raises(ImproperlyConfigured, match="at least 5"):
        env_int("X_NUM", 10, minimum=5)
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="must be an integer"):
        env_int("X_NUM", 10)


def test_it_splits_lists(monkeypatch):
    monkeypatch.setenv("X_LIST", " a.example, b.example ,,")
    assert env_list("X_LIST") == ["a.example", "b.example"]


def test_it_reads_secrets_from_env_then_file(monkeypatch, tmp_path):
    secret_file = tmp_path / "key"
    secret_file.write_text("from-file\n")
    monkeypatch.delenv("X_SECRET", raising=False)
    monkeypatch.setenv("X_SECRET_FILE", str(secret_file))
    assert env_secret("X_SECRET") == "from-file"
    monkeypatch.setenv("X_SECRET", "from-env")
    assert env_secret("X_SECRET") == "from-env"


def test_it_reports_an_unreadable_secret_file(monkeypatch, tmp_path):
    monkeypatch.delenv("X_SECRET", raising=False)
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_secret("X_SECRET")


MODEL_DEFAULTS = {
    "api_key": "not-needed",
    "temperature": 0.2,
    "max_tokens": 512,
    "max_executions": 5,
}


def test_it_reads_several_models_with_keys_from_env_and_files(monkeypatch, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("VLLM_KEY", "sk-from-env")
    monkeypatch.setenv(
        "X_MODELS",
        json.dumps(
            [
                {"key": "a", "base_url": "http://a/v1", "model": "m1", "api_key_env": "VLLM_KEY"},
                {
                    "key": "b",
                    "label": "Bee",
                    "base_url": "http://b/v1",
                    "model": "m2",
                    "api_key_file": str(key_file),
                    "max_executions": 8,
                    "temperature": 0,
                },
            ]
        ),
    )
    a, b = env_models("X_MODELS", MODEL_DEFAULTS)
    assert a == MODEL_DEFAULTS | {
        "key": "a",
        "label": "a",
        "base_url": "http://a/v1",
        "model": "m1",
        "api_key": "sk-from-env",
    }
    assert (b["label"], b["api_key"], b["max_executions"], b["temperature"]) == (
        "Bee",
        "sk-from-file",
        8,
        0.0,
    )


def test_it_reads_models_from_a_file(monkeypatch, tmp_path):
    path = tmp_path / "models.json"
    path.write_text('[{"key": "k", "base_url": "http://k/v1", "model": "m"}]')
    monkeypatch.delenv("X_MODELS", raising=False)
    monkeypatch.setenv("X_MODELS_FILE", str(path))
    assert [m["key"] for m in env_models("X_MODELS", MODEL_DEFAULTS)] == ["k"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"key": "a", "model": "m"}]', "needs 'base_url'"),
        ('[{"key": "a", "base_url": "u", "model": "m", "colour": 1}]', "unknown fields: colour"),
        (
            '[{"key": "a", "base_url": "u", "model": "m", "max_tokens": "lots"}]',
            "max_tokens must be int",
        ),
        (
            json.dumps([{"key": "a", "base_url": "u", "model": "m"}] * 2),
            "must be unique",
        ),
    ],
)
def test_it_explains_a_bad_models_setting(monkeypatch, raw, message):
    monkeypatch.setenv("X_MODELS", raw)
    with pytest.raises(ImproperlyConfigured, match=message):
        env_models("X_MODELS", MODEL_DEFAULTS)


def test_a_model_says_how_it_writes_code(monkeypatch):
    entries = [
        {"key": "a", "base_url": "u", "model": "m", "action_format": "Fence"},
        {"key": "b", "base_url": "u", "model": "m", "action_format": "tool"},
        {"key": "c", "base_url": "u", "model": "m"},
    ]
    monkeypatch.setenv("X_MODELS", json.dumps(entries))
    a, b, c = env_models("X_MODELS", MODEL_DEFAULTS | {"action_format": "execute"})
    assert (a["action_format"], b["action_format"], c["action_format"]) == (
        "fence",
        "tool",
        "execute",
    )
    monkeypatch.setenv("X_MODELS", json.dumps([entries[0] | {"action_format": "xml"}]))
    with pytest.raises(ImproperlyConfigured) as refused:
        env_models("X_MODELS", MODEL_DEFAULTS)
    assert str(refused.value) == (
        "X_MODELS[0].action_format must be one of execute, fence, tool, got 'xml'"
    )


def _formats_in_settings(**env: str) -> subprocess.CompletedProcess[str]:
    script = (
        "import json, codeact_web.settings as s; "
        "print(json.dumps([m['action_format'] for m in s.CODEACT_MODELS]))"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin", "SECRET_KEY": "only-for-this-test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "formats"),
    [
        ({}, ["fence"]),  # the bundled SmolLM2 writes ```python blocks
        ({"CODEACT_MODEL_URL": "http://vllm:8000/v1"}, ["execute"]),
        ({"CODEACT_MODEL_URL": "http://v/v1", "CODEACT_MODEL_ACTION_FORMAT": "tool"}, ["tool"]),
        (
            {
                "CODEACT_MODELS": json.dumps(
                    [
                        {"key": "a", "base_url": "u", "model": "m"},
                        {"key": "b", "base_url": "u", "model": "m", "action_format": "execute"},
                    ]
                ),
                "CODEACT_MODEL_ACTION_FORMAT": "fence",
            },
            ["fence", "execute"],
        ),
    ],
)
def test_the_action_format_defaults_by_deployment(env, formats):
    read = _formats_in_settings(**env)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == formats


def test_an_unknown_action_format_stops_the_settings():
    read = _formats_in_settings(CODEACT_MODEL_ACTION_FORMAT="json")
    assert read.returncode != 0
    assert "CODEACT_MODEL_ACTION_FORMAT must be one of execute, fence, tool" in read.stderr


def test_no_models_setting_means_the_single_default(monkeypatch):
    monkeypatch.delenv("X_MODELS", raising=False)
    monkeypatch.delenv("X_MODELS_FILE", raising=False)
    assert env_models("X_MODELS", MODEL_DEFAULTS) == []


@pytest.mark.parametrize(
    ("url", "password", "expected"),
    [
        ("redis://redis:6379/0", "s3cr/t@x", "redis://:s3cr%2Ft%40x@redis:6379/0"),
        ("redis://old:pw@redis:6379/0", "new", "redis://old:new@redis:6379/0"),
        ("redis://redis:6379/0", "", "redis://redis:6379/0"),
    ],
)
def test_it_puts_a_secret_password_into_a_url(url, password, expected):
    assert env_url_with_password(url, password) == expected


def test_it_reads_ports(monkeypatch):
    assert env_ports("X_PORTS", "80,443") == [80, 443]
    monkeypatch.setenv("X_PORTS", " 8080 , 443 ")
    assert env_ports("X_PORTS", "80") == [8080, 443]
    for bad in ("http", "0", "70000", "-1"):
        monkeypatch.setenv("X_PORTS", bad)
        with pytest.raises(ImproperlyConfigured, match="X_PORTS must list TCP ports"):
            env_ports("X_PORTS", "80")


def test_it_reads_networks(monkeypatch):
    assert env_networks("X_NETS", "127.0.0.1/32,::1") == ["127.0.0.1/32", "::1"]
    monkeypatch.setenv("X_NETS", " 10.0.0.0/8 , 192.0.2.7 ")
    assert env_networks("X_NETS") == ["10.0.0.0/8", "192.0.2.7"]
    for bad in ("localhost", "10.0.0.0/33", "300.1.1.1"):
        monkeypatch.setenv("X_NETS", bad)
        with pytest.raises(ImproperlyConfigured, match="X_NETS must list IP addresses or networks"):
            env_networks("X_NETS")
