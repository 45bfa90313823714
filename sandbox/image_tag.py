"""The sandbox image's tag: a hash of everything the image is built from."""

from __future__ import annotations

import hashlib
from pathlib import Path

IMAGE_DIR = Path(__file__).resolve().parent / "image"
REPOSITORY = "codeact-sandbox"


def image_tag() -> str:
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(IMAGE_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return f"{REPOSITORY}:{digest.hexdigest()[:16]}"
