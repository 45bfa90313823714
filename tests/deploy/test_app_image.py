"""The app image holds every package of the project: a Django app left out of
scripts/build-images' APP_SOURCES fails the image build only when the Compose tier
builds it, late in CI. Checked here, in the unit tier."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def app_sources() -> set[str]:
    script = (ROOT / "scripts" / "build-images").read_text()
    match = re.search(r"^APP_SOURCES=\(([^)]*)\)", script, re.MULTILINE)
    assert match is not None, "scripts/build-images no longer defines APP_SOURCES"
    return set(match.group(1).split())


def test_every_local_package_the_app_imports_goes_into_the_image():
    local = {
        app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()
    }
    local |= {settings.ROOT_URLCONF.split(".")[0], "sandbox"}  # the worker's sandbox code
    assert local <= app_sources(), f"missing from APP_SOURCES: {sorted(local - app_sources())}"
