"""Loaded with `-p tests.envplugin` before Django reads its settings.

Queues and channel names get a per-run prefix so a test run never shares
Redis traffic with `make run` (or another test run) on the same server.
"""

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
os.environ["CODEACT_MODEL_URL"] = f"http://127.0.0.1:{SCRIPTED_MODEL_PORT}/v1"
os.environ["CODEACT_MODEL_NAME"] = "scripted"
os.environ["CODEACT_MODEL_READ_TIMEOUT"] = "2"
os.environ["CODEACT_MODEL_CONNECT_TIMEOUT"] = "2"
os.environ["CODEACT_MODEL_RETRIES"] = "0"
os.environ["CODEACT_FLUSH_INTERVAL"] = "0.2"
# Connections opened by database_sync_to_async threads must not outlive a test:
# a lingering one stops the test database from being dropped.
os.environ["DATABASE_CONN_MAX_AGE"] = "0"
