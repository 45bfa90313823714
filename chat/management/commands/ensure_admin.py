"""Create the first superuser once. A generated password is printed only to a
terminal; otherwise it goes to a file only this account can read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from codeact_web.env import env_secret


class Command(BaseCommand):
    help = (
        "Create the admin account if no superuser exists "
        "(CODEACT_ADMIN_USERNAME, CODEACT_ADMIN_PASSWORD or CODEACT_ADMIN_PASSWORD_FILE)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("CODEACT_ADMIN_USERNAME") or "admin"
        password = env_secret("CODEACT_ADMIN_PASSWORD")  # or CODEACT_ADMIN_PASSWORD_FILE
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if not generated:
            self.stdout.write(self.style.SUCCESS(f"Created the admin account {username!r}."))
        elif self.stdout.isatty():
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the admin account: username {username!r}, password {password!r}. "
                    "It is shown only this once."
                )
            )
        else:
            # Output that is not a terminal is kept somewhere (a log file, `docker
            # logs`); the password goes to a file only this account can read.
            path = _save_password(password)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the admin account {username!r}; its password is in {path} "
                    "(readable by this account only): read it, then delete the file."
                )
            )


def _save_password(password: str) -> Path:
    path = Path(settings.VAR_DIR) / "admin_password"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    return path
