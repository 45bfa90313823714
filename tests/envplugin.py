"""Loaded with `-p tests.envplugin` before Django reads its settings.

Queues and channel names get a per-run prefix so a test run never shares
Redis traffic with `make run` (or another test run) on the same server.
"""

import json
import os
import socket


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RUN_ID = f"codeact-test-{os.getpid()}"
os.environ["CODEACT_CHANNEL_PREFIX"] = RUN_ID
os.environ["CELERY_QUEUE"] = RUN_ID
# The scripted model server of the suite listens here (see tests/conftest.py).
SCRIPTED_MODEL_PORT = _free_port()
# The bundled llama.cpp server, when a test starts it (tests/conftest.py::llama_server).
LLAMA_PORT = _free_port()
os.environ["CODEACT_MODELS"] = json.dumps(
    [
        {
            "key": "default",
            "label": "Scripted",
            "base_url": f"http://127.0.0.1:{SCRIPTED_MODEL_PORT}/v1",
            "model": "scripted",
        },
        {
            "key": "bundled",
            "label": "SmolLM2 (llama.cpp)",
            "base_url": f"http://127.0.0.1:{LLAMA_PORT}/v1",
            "model": "smollm2-135m-instruct",
            "max_tokens": 96,
            "max_executions": 2,
            "temperature": 0.0,
            "read_timeout": 60,
        },
        # The scripted model again, for models that write code in other ways.
        {
            "key": "fenced",
            "label": "Scripted (python fences)",
            "base_url": f"http://127.0.0.1:{SCRIPTED_MODEL_PORT}/v1",
            "model": "scripted",
            "action_format": "fence",
        },
        {
            "key": "tools",
            "label": "Scripted (function calls)",
            "base_url": f"http://127.0.0.1:{SCRIPTED_MODEL_PORT}/v1",
            "model": "scripted",
            "action_format": "tool",
        },
    ]
)
os.environ["CODEACT_MODEL_READ_TIMEOUT"] = "2"
os.environ["CODEACT_MODEL_CONNECT_TIMEOUT"] = "2"
os.environ["CODEACT_MODEL_RETRIES"] = "0"
os.environ["CODEACT_FLUSH_INTERVAL"] = "0.2"
# A killed worker's turn is found within seconds, not half a minute.
os.environ["CODEACT_TURN_LEASE_SECONDS"] = "3"
os.environ["CODEACT_CELL_TIMEOUT"] = "20"
os.environ["CODEACT_INTERRUPT_GRACE"] = "2"
os.environ["CODEACT_POOL_SIZE"] = "0"
os.environ["CODEACT_UPLOAD_MAX_MB"] = "2"  # small enough for a browser test to exceed
# Connections opened by database_sync_to_async threads must not outlive a test:
# a lingering one stops the test database from being dropped.
os.environ["DATABASE_CONN_MAX_AGE"] = "0"
