"""The egress proxy's two helpers, which Squid starts itself (sandbox/egress.py).

`log PATH`: Squid's logfile daemon. Squid writes each access-log line to its
stdin behind an `L`; the line is appended to PATH (the operator's access log)
and pushed to Redis under the sandbox's address, where the worker collects it
after the cell, and the sandbox's byte count grows by its size.

`check rate N` / `check budget BYTES`: an external ACL helper. For each request
Squid writes the sandbox's address; the answer `OK` means the ACL matches, and
the request is refused: more than N requests from that address within this
minute, or more than BYTES already moved. When Redis does not answer, requests
are refused (fail closed).

The helpers run under Squid's own user, which may not be able to read the app's
virtualenv (a root install keeps it under /root), so this file needs nothing
but Python's standard library: `write_proxy_files` copies it next to Squid's
configuration, and it speaks Redis's protocol (RESP) itself. The keys are
namespaced by CODEACT_EGRESS_REDIS_PREFIX and reset by the worker whenever a new
sandbox gets an address.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

RECORDS_KEPT = 2000  # per sandbox address, until the worker collects them
RECORD_TTL = 24 * 3600


def keys(prefix: str, address: str) -> dict[str, str]:
    base = f"{prefix}:egress:{address}"
    return {"log": f"{base}:log", "bytes": f"{base}:bytes", "rate": f"{base}:rate"}


def minute() -> int:
    return int(time.time() // 60)


def rate_key(prefix: str, address: str, at_minute: int) -> str:
    """A minute's request count; it lives two minutes."""
    return f"{keys(prefix, address)['rate']}:{at_minute}"


class RedisError(Exception):
    pass


class Redis:
    """Just enough of a Redis client: commands in, replies out, reconnecting once."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.password = unquote(parts.password) if parts.password else ""
        self.username = unquote(parts.username) if parts.username else ""
        self.db = int(parts.path.lstrip("/") or 0)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader: Any = None

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.reader = self.sock.makefile("rb")
        setup: list[list[str]] = []
        if self.password:
            setup.append(["AUTH", *([self.username] if self.username else []), self.password])
        if self.db:
            setup.append(["SELECT", str(self.db)])
        if setup:
            self._send(setup)

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    def _send(self, commands: list[list[str]]) -> list[Any]:
        assert self.sock is not None
        payload = b"".join(_encode(command) for command in commands)
        self.sock.sendall(payload)
        return [self._reply() for _ in commands]

    def _reply(self) -> Any:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise RedisError(body.decode(errors="replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise RedisError(f"unexpected reply {line[:20]!r}")

    def run(self, *commands: list[str]) -> list[Any]:
        """Send the commands in one round trip; their replies, in order."""
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self._connect()
                return self._send(list(commands))
            except (OSError, RedisError) as exc:
                self._close()
                if attempt == 2 or (
                    isinstance(exc, RedisError) and "connection closed" not in str(exc)
                ):
                    raise RedisError(str(exc)) from exc
        raise AssertionError("unreachable")


def _encode(command: list[str]) -> bytes:
    out = [f"*{len(command)}\r\n".encode()]
    for item in command:
        data = item.encode()
        out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(out)


def _client() -> Redis:
    return Redis(os.environ.get("CODEACT_EGRESS_REDIS_URL") or "redis://127.0.0.1:6379/0")


def _prefix() -> str:
    return os.environ.get("CODEACT_EGRESS_REDIS_PREFIX") or "codeact"


def record(client: Redis, prefix: str, line: str) -> None:
    """Keep one access-log line for the worker, and count its bytes."""
    fields = line.split(" ")
    if len(fields) < 8:
        return
    names = keys(prefix, fields[1])
    moved = sum(int(v) for v in (fields[6], fields[7]) if v.isdigit())
    client.run(
        ["RPUSH", names["log"], line],
        ["LTRIM", names["log"], str(-RECORDS_KEPT), "-1"],
        ["EXPIRE", names["log"], str(RECORD_TTL)],
        ["INCRBY", names["bytes"], str(moved)],
        ["EXPIRE", names["bytes"], str(RECORD_TTL)],
    )


def over(client: Redis, prefix: str, kind: str, limit: int, address: str) -> bool:
    """Whether this request takes the address over its limit."""
    if kind == "rate":
        key = rate_key(prefix, address, minute())
        count, _ = client.run(["INCR", key], ["EXPIRE", key, "120"])
        return int(count) > limit
    (moved,) = client.run(["GET", keys(prefix, address)["bytes"]])
    return int(moved or 0) > limit


def run_log(path: str, stdin: TextIO = sys.stdin) -> None:
    client, prefix = _client(), _prefix()
    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - reopened on 'R'
    for raw in stdin:
        command, line = raw[:1], raw[1:].rstrip("\n")
        if command == "L":
            out.write(line + "\n")
            try:
                record(client, prefix, line)
            except RedisError as exc:
                print(f"codeact egress log: Redis: {exc}", file=sys.stderr, flush=True)
        elif command in ("R", "O"):  # rotate / reopen: the operator's logrotate moved it
            out.close()
            out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        elif command == "T":
            out.truncate(0)
        elif command == "F":
            out.flush()


def run_check(
    kind: str, limit: int, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout
) -> None:
    client, prefix = _client(), _prefix()
    for raw in stdin:
        address = raw.strip().split(" ")[0]
        try:
            answer = "OK" if over(client, prefix, kind, limit, address) else "ERR"
        except (RedisError, ValueError) as exc:
            print(f"codeact egress check: {exc}; refusing", file=sys.stderr, flush=True)
            answer = "OK"
        stdout.write(answer + "\n")
        stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "log":
        run_log(argv[1])
        return 0
    if len(argv) == 3 and argv[0] == "check" and argv[1] in ("rate", "budget"):
        run_check(argv[1], int(argv[2]))
        return 0
    print("usage: egress_helper.py log PATH | check rate|budget LIMIT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
