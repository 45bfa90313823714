"""The first admin account: its generated password reaches a terminal, never a log."""

import os
import stat
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("CODEACT_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("CODEACT_ADMIN_USERNAME", raising=False)
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_it_keeps_a_generated_password_out_of_output_that_is_not_a_terminal(var_dir):
    out = StringIO()  # what a log file or `docker logs` would keep
    call_command("ensure_admin", stdout=out)

    saved = var_dir / "admin_password"
    password = saved.read_text().strip()
    assert password and password not in out.getvalue()
    assert str(saved) in out.getvalue()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert User.objects.get(username="admin").check_password(password)


def test_it_shows_a_generated_password_on_a_terminal(var_dir):
    leader, follower = os.openpty()
    with open(follower, "w") as terminal:
        call_command("ensure_admin", stdout=terminal)
    shown = os.read(leader, 4096).decode()
    os.close(leader)

    assert "password" in shown
    assert not (var_dir / "admin_password").exists()
    password = shown.split("password ")[1].split("'")[1]
    assert User.objects.get(username="admin").check_password(password)
