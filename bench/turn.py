"""Turn benchmark: the whole app against a direct client, measured in the same run.

    make bench-turn           (BENCH_ROUNDS scales the number of samples)
    BENCH_LEVELS=20 BENCH_CELL_LEVELS= make bench-turn     (one level, no cell turns)

A scripted OpenAI-compatible server streams at a fixed token rate, each token
due by the clock (BENCH_ON_SCHEDULE=0: a fixed sleep after each write, which a
busy machine stretches). Baseline: a direct streaming client (the app's own
model client) against that server, at the same concurrency. App: websocket
clients through Daphne, the channel layer, the Celery worker processes `make
run` starts, PostgreSQL and real sandboxes. Rows, at 1, 10, 20 and
50 concurrent conversations, p50/p95:

- time to first token: app minus direct;
- tokens per second at the client, as a ratio to direct;
- a one-cell turn, send to rendered answer, minus (model time + cell time),
  at 1, 10 and 50 conversations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUN = f"codeact-bench-{os.getpid()}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codeact_web.settings")
os.environ["CODEACT_CHANNEL_PREFIX"] = RUN
os.environ["CELERY_QUEUE"] = RUN
os.environ["CODEACT_POOL_SIZE"] = "0"
os.environ["CODEACT_SANDBOXES_PER_USER"] = "3"
os.environ["CODEACT_MODEL_READ_TIMEOUT"] = "60"
# 50 sandboxes start at once on a small machine: give them time.
os.environ["CODEACT_SANDBOX_START_TIMEOUT"] = "300"

from tests.support.processes import free_port  # noqa: E402

MODEL_PORT = free_port()
os.environ["CODEACT_MODELS"] = json.dumps(
    [
        {
            "key": "default",
            "base_url": f"http://127.0.0.1:{MODEL_PORT}/v1",
            "model": "scripted",
            "max_tokens": 4096,
        }
    ]
)

import django  # noqa: E402

django.setup()
# The direct client logs every request at INFO; the table is the output here.
logging.getLogger("httpx2").setLevel(logging.WARNING)

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from chat.actions.conversations import model_config  # noqa: E402
from chat.agent.model import ModelSettings, OpenAIModelClient  # noqa: E402
from chat.models import SandboxRecord  # noqa: E402
from chat.worker import pool  # noqa: E402
from tests.support.processes import start_web, start_worker  # noqa: E402
from tests.support.scripted_model import Script, ScriptedModelServer  # noqa: E402
from tests.support.sessions import signed_in_user  # noqa: E402

RATE = float(os.environ.get("BENCH_TOKEN_RATE", "50"))  # tokens per second per reply
TOKENS = int(os.environ.get("BENCH_TOKENS", "48"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))


def _levels(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """BENCH_LEVELS="20" / BENCH_CELL_LEVELS="" run a subset (a quick A/B of one level)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return tuple(int(part) for part in raw.replace(",", " ").split())


LEVELS = _levels("BENCH_LEVELS", (1, 10, 20, 50))
CELL_LEVELS = _levels("BENCH_CELL_LEVELS", (1, 10, 50))
CELL_CODE = "import math\nprint(math.factorial(20))"
ON_SCHEDULE = os.environ.get("BENCH_ON_SCHEDULE", "1") == "1"
STREAM = Script(chunks=[f" tok{i}" for i in range(TOKENS)], delay=1 / RATE, on_schedule=ON_SCHEDULE)
CODE = Script(
    chunks=["Computing.\n", "<execute>\n", CELL_CODE, "\n</execute>"],
    delay=1 / RATE,
    on_schedule=ON_SCHEDULE,
)
ANSWER = Script(
    chunks=["It", " is", " 2432902008176640000."], delay=1 / RATE, on_schedule=ON_SCHEDULE
)


def route(body: dict[str, Any]) -> Script:
    last = body["messages"][-1]["content"]
    if last.startswith("Execution Output:"):
        return ANSWER
    if "[cell]" in last:
        return CODE
    return STREAM


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU time of a process and, unless told not to, its children
    (Linux; 0.0 without /proc)."""
    total, parents = 0, {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    for candidate, (_parent, ticks) in parents.items():
        node, hops = candidate, 0
        while node != pid and node in parents and hops < 8:
            node, hops = parents[node][0], hops + 1
        if node == pid and (children or candidate == pid):
            total += ticks
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time every core has spent not idle (Linux; 0.0 without /proc)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Timing:
    first: float = 0.0  # send (or request) to first token
    rate: float = 0.0  # tokens per second from the first to the last token
    total: float = 0.0
    cell: float = 0.0


@dataclass
class Level:
    direct: list[Timing] = field(default_factory=list)
    app: list[Timing] = field(default_factory=list)


# --- direct baseline ------------------------------------------------------------


def model_paces() -> list[float]:
    """The rates (tokens/s) the scripted model wrote its replies at since the last call."""
    url = model_config("default")["base_url"] + "/_paces"
    with urllib.request.urlopen(url, timeout=10) as response:
        paces: list[float] = json.load(response)["paces"]
    return paces


def direct_stream(messages: list[dict[str, str]]) -> Timing:
    config = model_config("default")
    client = OpenAIModelClient(
        ModelSettings(base_url=config["base_url"], model="scripted", read_timeout=60, retries=0)
    )
    stamps: list[float] = []
    started = time.perf_counter()
    client.stream(messages, lambda _t: stamps.append(time.perf_counter()))
    done = time.perf_counter()
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return Timing(
        first=stamps[0] - started,
        rate=(len(stamps) - 1) / span if span else 0.0,
        total=done - started,
    )


def offsets(concurrency: int, seed: int) -> list[float]:
    """When each conversation starts, in seconds: spread at random (seeded) over one
    reply's length, as independent users are. `burst` rows start them all at once."""
    spread = TOKENS / RATE
    rng = random.Random(seed)
    return [0.0] + [rng.uniform(0, spread) for _ in range(concurrency - 1)]


async def conversations(
    count: int, rounds: int, turn: Callable[[int], Awaitable[Timing]], *, burst: bool
) -> list[Timing]:
    """`count` conversations each take `rounds` turns (`turn(n)` for conversation n),
    each after the previous one ends. Steady: they start at spread-out moments and
    then run back to back. Burst: every round, all of them start in the same instant."""
    if burst:
        timings: list[Timing] = []
        for _ in range(rounds):
            timings += await asyncio.gather(*[turn(n) for n in range(count)])
        return timings

    async def conversation(n: int, delay: float) -> list[Timing]:
        await asyncio.sleep(delay)
        return [await turn(n) for _ in range(rounds)]

    starts = offsets(count, seed=count)
    return [t for ts in await asyncio.gather(*map(conversation, range(count), starts)) for t in ts]


async def direct_level(concurrency: int, rounds: int, *, burst: bool) -> list[Timing]:
    ask = [{"role": "user", "content": "stream please"}]
    return await conversations(
        concurrency, rounds, lambda _n: asyncio.to_thread(direct_stream, ask), burst=burst
    )


async def direct_cell_model_time(concurrency: int) -> float:
    """Model time of a one-cell turn: the code reply, then the answer."""

    def both() -> float:
        code = direct_stream([{"role": "user", "content": "[cell]"}])
        answer = direct_stream([{"role": "user", "content": "Execution Output:\n1"}])
        return code.total + answer.total

    totals = await asyncio.gather(*[asyncio.to_thread(both) for _ in range(concurrency)])
    return statistics.median(totals)


# --- through the app --------------------------------------------------------------


class Client:
    def __init__(self, web_port: int, cookie: str, conversation_id: str) -> None:
        self.url = f"ws://127.0.0.1:{web_port}/ws/conversations/{conversation_id}/"
        self.origin = f"http://127.0.0.1:{web_port}"  # the site's own: scheme, host and port
        self.cookie = cookie
        self.ws: Any = None

    async def open(self) -> None:
        self.ws = await connect(
            self.url,
            origin=self.origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": self.cookie},
            max_size=None,
        )
        await self.ws.recv()  # hello

    async def turn(self, text: str) -> Timing:
        stamps: list[float] = []
        tokens: list[int] = []  # per frame: the app may put several tokens in one
        cell = 0.0
        started = time.perf_counter()
        await self.ws.send(json.dumps({"type": "user_message", "text": text}))
        while True:
            event = json.loads(await asyncio.wait_for(self.ws.recv(), 120))
            kind = event["type"]
            if kind == "delta":
                stamps.append(time.perf_counter())
                tokens.append(event["text"].count(" tok"))
            elif kind == "execution" and event["execution"]["status"] != "running":
                cell = float(event["execution"]["duration"] or 0.0)
            elif kind == "error":
                raise RuntimeError(f"the app refused a turn: {event}")
            elif kind == "turn" and event["turn"]["status"] not in ("queued", "running"):
                if event["turn"]["status"] != "done":
                    raise RuntimeError(f"turn ended {event['turn']}")
                break
        done = time.perf_counter()
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        return Timing(
            first=stamps[0] - started if stamps else 0.0,
            rate=(sum(tokens) - tokens[0]) / span if span else 0.0,
            total=done - started,
            cell=cell,
        )

    async def close(self) -> None:
        await self.ws.close()


def make_clients(count: int, web_port: int) -> list[Client]:
    return [Client(web_port, *signed_in_user(f"{RUN}-{n}")) for n in range(count)]


async def app_level(clients: list[Client], text: str, rounds: int, *, burst: bool) -> list[Timing]:
    return await conversations(len(clients), rounds, lambda n: clients[n].turn(text), burst=burst)


# --- report -------------------------------------------------------------------------


def row(name: str, samples: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    return (
        f"{name:<48} {p(samples, 0.5) * scale:>9.1f} {p(samples, 0.95) * scale:>9.1f} "
        f"{unit:>4} {len(samples):>4}"
    )


class CpuMeter:
    """CPU the app's processes spend per turn: steadier than latency on a busy machine."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.start: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self.start = {name: self._cpu(name) for name in self.pids}
        self.machine_start, self.wall_start = machine_cpu_seconds(), time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        self.used = {name: self._cpu(name) - self.start[name] for name in self.pids}
        self.machine_used = machine_cpu_seconds() - self.machine_start
        self.wall = time.monotonic() - self.wall_start

    def _cpu(self, name: str) -> float:
        # The bench process started the others: count its own time only.
        return sum(cpu_seconds(pid, children=pid != os.getpid()) for pid in self.pids[name])

    def line(self, what: str, turns: int) -> str:
        per_turn = ", ".join(f"{n} {used / turns * 1000:.1f}" for n, used in self.used.items())
        busy = (self.machine_used / self.wall) if self.wall else 0.0
        return (
            f"  (CPU per {what}: {per_turn} ms; "
            f"machine {busy * 100 / os.cpu_count():.0f}% busy)"  # type: ignore[operator]
        )


async def run(web_port: int, pids: dict[str, list[int]]) -> list[str]:
    lines = []
    verdicts: list[tuple[str, float, float]] = []
    count = max(LEVELS + CELL_LEVELS, default=1)
    all_clients = await asyncio.to_thread(make_clients, count, web_port)
    for client in all_clients:
        await client.open()
    for level in LEVELS:
        rounds = max(3, ROUNDS * (60 // level)) if level < 50 else 2 * ROUNDS
        clients = all_clients[:level]
        await app_level(clients, "warm up", 1, burst=True)
        await asyncio.to_thread(model_paces)
        direct = await direct_level(level, rounds, burst=False)
        direct_paces = await asyncio.to_thread(model_paces)
        with CpuMeter(pids) as cpu:
            app = await app_level(clients, "stream please", rounds, burst=False)
        app_paces = await asyncio.to_thread(model_paces)
        base_first = statistics.median(t.first for t in direct)
        base_rate = statistics.median(t.rate for t in direct)
        overhead = [t.first - base_first for t in app]
        ratios = [t.rate / base_rate for t in app]
        lines.append(row(f"first token, app - direct, {level} conv", overhead))
        lines.append(row(f"  (direct first token, {level} conv)", [t.first for t in direct]))
        lines.append(cpu.line(f"turn of {TOKENS} tokens, {level} conv", len(app)))
        lines.append(
            f"{f'client tokens/s ratio to direct, {level} conv':<48} "
            f"{p(ratios, 0.5):>9.3f} {p(ratios, 0.05):>9.3f} {'x':>4} {len(ratios):>4}"
            "   (p50, p5)"
        )
        lines.append(
            f"  (model's own write rate / {RATE:g} tokens/s, p50 (p5): "
            f"direct run {p(direct_paces, 0.5) / RATE:.3f} ({p(direct_paces, 0.05) / RATE:.3f}), "
            f"app run {p(app_paces, 0.5) / RATE:.3f} ({p(app_paces, 0.05) / RATE:.3f}))"
        )
        if level > 1:  # the same, every conversation sending in the same instant
            bursts = max(2, ROUNDS * 40 // level)
            direct_burst = await direct_level(level, bursts, burst=True)
            app_burst = await app_level(clients, "stream please", bursts, burst=True)
            burst_first = statistics.median(t.first for t in direct_burst)
            lines.append(
                row(
                    f"  (first token, app - direct, {level} at once)",
                    [t.first - burst_first for t in app_burst],
                )
            )
        if level == 1:
            verdicts.append(
                ("first-token overhead p50, 1 conv <= 25 ms", p(overhead, 0.5) * 1000, 25)
            )
        if level == 20:
            verdicts.append(
                ("first-token overhead p95, 20 conv <= 120 ms", p(overhead, 0.95) * 1000, 120)
            )
        verdicts.append((f"client token rate p50, {level} conv >= 0.98x", p(ratios, 0.5), -0.98))
    for level in CELL_LEVELS:
        clients = all_clients[:level]
        # The warm-up claims each conversation's sandbox.
        await app_level(clients, "[cell] warm up", 1, burst=True)
        rounds = max(1, ROUNDS * (20 // level)) if level < 50 else ROUNDS
        model_time = await direct_cell_model_time(level)
        with CpuMeter(pids) as cpu:
            app = await app_level(clients, "[cell] compute", rounds, burst=True)
        overhead = [t.total - model_time - t.cell for t in app]
        lines.append(row(f"one-cell turn overhead, {level} conv", overhead))
        lines.append(
            row(f"  (send to answer, {level} conv)", [t.total for t in app])
            + f"   model {model_time * 1000:.0f} ms, cell p50 "
            f"{statistics.median(t.cell for t in app) * 1000:.0f} ms"
        )
        lines.append(cpu.line(f"one-cell turn, {level} conv", len(app)))
        if level == 1:
            verdicts.append(
                ("one-cell turn overhead p50, 1 conv <= 150 ms", p(overhead, 0.5) * 1000, 150)
            )
    for client in all_clients:
        await client.close()
    lines.append("")
    for name, value, target in verdicts:
        met = value >= -target if target < 0 else value <= target
        shown = f"{value:.3f}x" if target < 0 else f"{value:.1f} ms"
        lines.append(f"{name:<48} {shown:>12}  {'met' if met else 'MISSED'}")
    return lines


def cleanup() -> None:
    for record in SandboxRecord.objects.filter(
        state__in=SandboxRecord.LIVE, owner__username__startswith=RUN
    ):
        pool.remove(record, "bench")
    get_user_model().objects.filter(username__startswith=RUN).delete()


def serve(port: int) -> None:
    """The scripted model, in its own process so the clients do not slow it down."""
    server = ScriptedModelServer()
    server.port = port
    server.record = False
    server.route = route
    server.start()
    threading.Event().wait()


def start_model_server() -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(MODEL_PORT)], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", MODEL_PORT)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the scripted model server did not start")


def main() -> None:
    server = start_model_server()
    web_port = free_port()
    # The worker processes `make run` starts (CODEACT_WORKER_PROCESSES), each able
    # to run every conversation of the largest level.
    workers = [
        start_worker(name=f"bench-worker{n}", concurrency=64)
        for n in range(settings.CODEACT_WORKER_PROCESSES)
    ]
    web = start_web(web_port)
    print(
        f"scripted model: {TOKENS} tokens at {RATE:g} tokens/s per reply; "
        f"levels {LEVELS} (one-cell turns at {CELL_LEVELS}); "
        f"{len(workers)} worker process(es)\n",
        flush=True,
    )
    try:
        pids = {
            "web": [web.proc.pid],
            "worker": [w.proc.pid for w in workers],
            "clients": [os.getpid()],
            "model": [server.pid],
        }
        lines = asyncio.run(run(web_port, pids))
    finally:
        web.stop()
        for worker in workers:
            worker.stop()
        server.terminate()
        cleanup()
    print(f"{'row':<48} {'p50':>9} {'p95':>9} {'unit':>4} {'n':>4}")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
    else:
        main()
