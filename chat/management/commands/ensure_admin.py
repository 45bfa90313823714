"""Create the first superuser once; print its password only when it was generated."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin account if no superuser exists (CODEACT_ADMIN_USERNAME/PASSWORD)."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("CODEACT_ADMIN_USERNAME") or "admin"
        password = os.environ.get("CODEACT_ADMIN_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the admin account: username {username!r}, password {password!r}. "
                    "It is shown only this once."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Created the admin account {username!r}."))
