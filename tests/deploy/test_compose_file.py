"""Defaults of the Compose deployment that no running test sees (the compose tier
replaces the model with its scripted one)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_bundled_model_runs_its_python_blocks_by_default():
    """SmolLM2 writes python fences, not <execute> tags: with `execute` the default
    install would show its code and run none of it."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["x-app"]["environment"]
    assert environment["CODEACT_MODEL_NAME"] == "${CODEACT_MODEL_NAME:-smollm2-135m-instruct}"
    assert environment["CODEACT_MODEL_ACTION_FORMAT"] == "${CODEACT_MODEL_ACTION_FORMAT:-fence}"
