import pytest
from django.core.exceptions import ImproperlyConfigured

from codeact_web.env import env_bool, env_float, env_int, env_list, env_secret


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
