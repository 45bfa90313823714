"""The chaos tier (`make test-chaos`): restarts of PostgreSQL, Daphne and dockerd
under running turns, a disk-filling cell, and a soak. These tests restart shared
services (dockerd) or run for minutes, so a plain `pytest` / `make test` skips
them; CODEACT_CHAOS=1 (which `make test-chaos` sets) runs them."""

from __future__ import annotations

import os
from typing import Any

import pytest


def pytest_runtest_setup(item: Any) -> None:
    if item.get_closest_marker("chaos") and os.environ.get("CODEACT_CHAOS") != "1":
        pytest.skip("chaos tier: run with `make test-chaos` (CODEACT_CHAOS=1)")


@pytest.fixture(autouse=True)
def _remove_sandboxes() -> Any:
    """Sandboxes a chaos test started go when it ends (tests run one at a time, so
    every container of this run's deployments is the test's own)."""
    yield
    import docker

    from sandbox.docker_backend import docker_client, managed_containers
    from tests import envplugin

    for deployment in (envplugin.RUN_ID, f"{envplugin.RUN_ID}-pg"):
        try:
            for container in managed_containers(
                docker_client(), **{"codeact.deployment": deployment}
            ):
                container.remove(force=True)
        except docker.errors.DockerException:
            pass  # the engine is restarting, or gone: the session's own cleanup retries
