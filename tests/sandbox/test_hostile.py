"""Hostile programs: each ends as expected, and nothing else is harmed.

Every case runs in a fresh sandbox beside a long-lived neighbour; afterwards
the neighbour must answer promptly with its state intact, the Docker engine
must respond and the host's PostgreSQL and Redis must still answer.
"""

import json
import os
import textwrap
import threading
import time

import pytest

from sandbox.api import SandboxError
from tests.sandbox.conftest import assert_unharmed, docker_only, make_sandbox, recover, text_of

pytestmark = pytest.mark.integration


def run(box, code, **kwargs):
    return box.execute(textwrap.dedent(code), **kwargs)


def test_fork_bomb(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    )
    assert result.status in {"timeout", "error", "died"}
    recover(sandbox)
    processes = text_of(
        sandbox.execute("import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))")
    )
    assert int(processes) < 10, "the bomb's processes must not outlive the cell"
    assert_unharmed(backend, neighbour)


def test_shell_fork_bomb(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        import subprocess
        subprocess.run(["bash", "-c", ":(){ :|:& };:"], timeout=3)
        """,
    )
    # bash may give up on its own once the pids limit bites; either way the
    # bomb is contained and its processes are gone after the cell.
    assert result.status in {"ok", "timeout", "error", "died"}
    recover(sandbox)
    count = "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))"
    assert int(text_of(sandbox.execute(count))) < 10
    assert_unharmed(backend, neighbour)


def test_thread_bomb(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
        """,
    )
    # runc: the pids limit stops thread creation (RuntimeError); gVisor counts
    # threads differently and the cell runs into the time limit instead -- or, when
    # it makes threads fast enough, their stacks reach the memory limit first and the
    # whole gVisor sandbox is killed (died, seen here: eof after 3.4 s of a 4 s limit).
    allowed = {"error", "timeout"} | ({"died"} if backend.runtime == "runsc" else set())
    assert result.status in allowed, result
    if result.status == "error":
        assert result.outputs[-1]["ename"] == "RuntimeError"
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_memory_bomb(backend, neighbour, sandbox):
    sandbox.execute("before = 1")
    result = run(
        sandbox,
        """
        hog = []
        while True:
            hog.append(bytearray(64 * 2**20))
        """,
    )
    assert result.status in {"died", "error"}
    if result.status == "died":
        assert result.state_lost
    recover(sandbox)
    assert_unharmed(backend, neighbour)


@pytest.mark.parametrize("directory", ["/tmp", "/workspace"])
def test_filling_a_tmpfs(backend, neighbour, sandbox, directory):
    result = run(
        sandbox,
        f"""
        with open("{directory}/filler", "wb") as handle:
            while True:
                handle.write(b"0" * 2**20)
        """,
    )
    assert result.status == "error"
    assert result.outputs[-1]["ename"] == "OSError"
    assert "No space left" in result.outputs[-1]["evalue"]
    sandbox.execute(f"import os\nos.remove('{directory}/filler')")
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_a_million_small_files(backend, neighbour, sandbox, runtime):
    # Docker caps the tmpfs's inodes (nr_inodes); on Kubernetes the bridge's watchdog
    # (--inodes) stops the cell with the same OSError a moment after the cap.
    result = run(
        sandbox,
        """
        import os
        os.makedirs("many", exist_ok=True)
        for i in range(1_000_000):
            open(f"many/{i}", "w").close()
        """,
    )
    if runtime == "runc":
        # The inode cap ends it long before memory runs out; the kernel survives.
        assert result.status == "error"
        assert result.outputs[-1]["ename"] == "OSError"
        assert "No space left on device" in result.outputs[-1]["evalue"]
        assert not result.state_lost
    else:  # gVisor ignores nr_inodes; its files count as the sandbox's memory
        assert result.status in {"timeout", "error", "died"}
    listed = sandbox.list_files()
    assert 0 < len(listed) <= 2000, "listing is capped"
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_infinite_printing(backend, neighbour, sandbox):
    result = run(sandbox, "while True:\n    print('x' * 200)")
    assert result.status == "timeout"
    stored = sum(len(o["text"]) for o in result.outputs if o["output_type"] == "stream")
    assert stored <= 1 << 20
    assert result.dropped_stream_bytes > 0
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_one_100_mb_line(backend, neighbour, runtime):
    # The line and its copies (kernel, message, bridge) need the production
    # memory limit rather than the suite's smaller one.
    from dataclasses import replace

    from tests.sandbox.conftest import TEST_LIMITS

    sandbox = make_sandbox(backend, replace(TEST_LIMITS, memory_bytes=1024 << 20))
    try:
        result = run(sandbox, "print('y' * 100_000_000)", timeout=60)
    finally:
        sandbox.close()
    assert result.status == "ok"
    stored = sum(len(o["text"]) for o in result.outputs if o["output_type"] == "stream")
    assert 0 < stored <= 1 << 20
    assert result.dropped_stream_bytes >= 100_000_000 - (1 << 20)
    assert_unharmed(backend, neighbour)


def test_ten_thousand_display_calls(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        from IPython.display import display
        for i in range(10_000):
            display(i)
        """,
        timeout=60,
    )
    # gVisor is slow at this many messages and may reach the time limit first;
    # either way at most 50 displays are kept and the rest are counted.
    assert result.status in {"ok", "timeout"}
    assert len([o for o in result.outputs if o["output_type"] == "display_data"]) == 50
    assert result.dropped_displays > 0
    if result.status == "ok":
        assert result.dropped_displays == 10_000 - 50
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_a_20000_by_20000_image(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        fig = plt.figure(figsize=(200, 200), dpi=100)
        plt.plot([0, 1], [0, 1])
        plt.show()
        """,
        timeout=60,
    )
    assert result.status in {"ok", "error", "died", "timeout"}
    for output in result.outputs:
        image = output.get("data", {}).get("image/png", "")
        assert len(image) <= (5 << 20) * 4 // 3 + 4, "no image over the cap reaches the host"
    if result.status == "ok":
        assert result.dropped_images >= 1
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_a_busy_loop_past_the_time_limit(backend, neighbour, sandbox):
    sandbox.execute("state = 42")
    result = run(sandbox, "while True:\n    pass")
    assert result.status == "timeout"
    assert 4 <= result.duration < 4 + 2 + 3
    assert text_of(sandbox.execute("print(state)")) == "42\n"
    assert_unharmed(backend, neighbour)


@pytest.mark.parametrize(
    "code",
    [
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "import ctypes\nctypes.CDLL(None).sleep(1000)",
    ],
    ids=["ignores-sigint", "c-level-sleep"],
)
def test_code_that_resists_the_interrupt(backend, neighbour, sandbox, code):
    result = sandbox.execute(code)
    assert result.status == "timeout"
    assert result.duration < 4 + 2 + 10
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_a_daemon_does_not_leak_output_into_the_next_cell(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        import os, subprocess, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    print("LEAK-FORK", flush=True)
                    time.sleep(0.05)
            os._exit(0)
        os.wait()
        loop = "while true; do echo LEAK-SH; sleep 0.05; done"
        subprocess.Popen(f"nohup sh -c '{loop}' &", shell=True)
        time.sleep(0.3)
        print("first cell done")
        """,
    )
    assert result.status == "ok"
    following = sandbox.execute("import time\ntime.sleep(1)\nprint('second cell')")
    assert text_of(following) == "second cell\n"
    assert_unharmed(backend, neighbour)


def test_the_network_is_unreachable(backend, neighbour, sandbox):
    # First prove there is no interface but loopback: then no packet can leave,
    # whatever the connection attempts below do.
    interfaces = text_of(sandbox.execute("import os\nprint(sorted(os.listdir('/sys/class/net')))"))
    if backend.docker is not None:
        assert interfaces.strip() == "['lo']"
    # else: a real cluster's pod always has an interface; its NetworkPolicy is the wall
    result = sandbox.execute(network_probe(), timeout=30)
    outcome = json.loads(text_of(result))
    assert "connected" not in outcome.values(), outcome
    assert outcome["dns"] != "resolved"
    assert_unharmed(backend, neighbour)


NETWORK_TARGETS = {
    "public": ("203.0.113.7", 80),
    "dns-server": ("192.0.2.53", 53),
    "bridge-gateway": ("172.17.0.1", 2375),
    "host-postgres": ("127.0.0.1", 5432),
    "host-redis": ("127.0.0.1", 6379),
    "metadata": ("169.254.169.254", 80),
}


def network_probe(extra: dict[str, tuple[str, int]] | None = None) -> str:
    """A cell that tries raw TCP connections (NETWORK_TARGETS and `extra`) and a DNS
    lookup, and prints what happened to each as JSON (also used with web access on:
    tests/sandbox/test_egress.py)."""
    targets = {**NETWORK_TARGETS, **(extra or {})}
    return textwrap.dedent(
        f"""
        import json, socket
        targets = {targets!r}
        outcome = {{}}
        for name, address in targets.items():
            try:
                socket.create_connection(tuple(address), timeout=2).close()
                outcome[name] = "connected"
            except OSError as exc:
                outcome[name] = type(exc).__name__
        try:
            socket.getaddrinfo("example.com", 443)
            outcome["dns"] = "resolved"
        except OSError as exc:
            outcome["dns"] = type(exc).__name__
        print(json.dumps(outcome))
        """
    )


def test_no_secret_reaches_the_sandbox(backend, neighbour, sandbox, monkeypatch):
    monkeypatch.setenv("CODEACT_MODEL_API_KEY", "sk-host-secret-do-not-leak")
    box = make_sandbox(backend)
    try:
        result = run(
            box,
            """
            import os
            print(sorted(os.environ))
            try:
                print(open("/proc/1/environ").read())
            except PermissionError:
                print("the bridge's environment is hidden")
            print(os.path.exists("/run/secrets"), os.path.exists("/var/run/docker.sock"),
                  os.path.exists("/run/docker.sock"))
            """,
        )
    finally:
        box.close()
    text = text_of(result)
    secrets = ("sk-host-secret", "SECRET_KEY", "DATABASE_URL", "API_KEY", "REDIS_URL", "BRIDGE_KEY")
    for secret in secrets:
        assert secret not in text
    assert text.strip().endswith("False False False")
    assert os.environ["CODEACT_MODEL_API_KEY"] == "sk-host-secret-do-not-leak"
    assert_unharmed(backend, neighbour)


def test_privilege_escalation_fails(backend, neighbour, sandbox, runtime):
    result = run(
        sandbox,
        """
        import os, subprocess
        def attempt(argv):
            try:
                done = subprocess.run(argv, capture_output=True, timeout=10)
                return done.returncode
            except FileNotFoundError:
                return "missing"
        print("sudo", attempt(["sudo", "id"]))
        print("unshare", attempt(["unshare", "-r", "id"]))
        print("mount", attempt(["mount", "-t", "tmpfs", "none", "/mnt"]))
        try:
            os.setuid(0)
            print("setuid ok")
        except PermissionError:
            print("setuid refused")
        print("uid", os.getuid(), os.geteuid())
        """,
    )
    lines = dict(line.split(" ", 1) for line in text_of(result).splitlines())
    assert lines["sudo"] in {"missing", "1"}
    if runtime == "runc":
        # Under gVisor a user namespace lives in its own kernel: no host privilege.
        assert lines["unshare"] != "0"
    assert lines["mount"] != "0"
    assert lines["setuid"] == "refused"
    assert lines["uid"] == "1000 1000"
    assert_unharmed(backend, neighbour)


def test_the_root_filesystem_is_read_only(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        import site
        packages = site.getsitepackages()[0]
        for path in ["/evil", "/usr/evil", packages + "/evil.py", "/opt/bridge/bridge.py"]:
            try:
                open(path, "a").write("x")
                print(path, "WRITTEN")
            except OSError as exc:
                print(path, type(exc).__name__)
        """,
    )
    assert "WRITTEN" not in text_of(result)
    assert_unharmed(backend, neighbour)


def test_link_and_fifo_tricks_against_get_file(backend, neighbour, sandbox):
    run(
        sandbox,
        """
        import os
        open("real.txt", "w").write("fine")
        os.symlink("/etc/passwd", "passwd-link")
        os.symlink("real.txt", "inner-link")
        os.mkfifo("pipe")
        os.link("real.txt", "hard")
        os.makedirs("dir", exist_ok=True)
        os.symlink("/etc", "etc-link")
        """,
    )
    for name in ["passwd-link", "inner-link", "pipe", "hard", "real.txt", "etc-link/passwd", "dir"]:
        with pytest.raises(SandboxError) as refused:
            sandbox.get_file(name)
        assert refused.value.permanent, name
    with pytest.raises(SandboxError):
        sandbox.put_file("etc-link/evil", b"x")
    assert {f.path for f in sandbox.list_files()} == set()  # hardlinked real.txt is not offered
    assert_unharmed(backend, neighbour)


def test_kill_everything_then_the_kernel_comes_back(backend, neighbour, sandbox):
    result = sandbox.execute("import os\nos.kill(-1, 9)")
    # The bridge is PID 1, which kill(-1) spares, as it spares the caller: with
    # nothing else to kill the call fails (ProcessLookupError), or the kernel dies
    # with the rest, depending on the runtime.
    assert result.status in {"ok", "error", "died"}
    if result.status == "died":
        assert result.state_lost
    sandbox.restart()
    assert text_of(sandbox.execute("print(6 * 7)", timeout=30)) == "42\n"
    assert_unharmed(backend, neighbour)


def test_one_sandbox_cannot_see_another(backend, neighbour, sandbox):
    run(
        neighbour,
        "open('/workspace/neighbour-secret.txt', 'w').write('s3cret')",
    )
    result = run(
        sandbox,
        """
        import os
        cmdlines = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmdlines.append(open(f"/proc/{pid}/cmdline").read())
                except OSError:
                    pass
        print(len(cmdlines), os.listdir("/workspace"), os.listdir("/tmp"))
        """,
    )
    text = text_of(result)
    assert "neighbour-secret" not in text
    assert int(text.split()[0]) < 10
    assert [f.path for f in sandbox.list_files()] == []
    run(neighbour, "import os\nos.remove('/workspace/neighbour-secret.txt')")
    assert_unharmed(backend, neighbour)


# --- issue 14: output caps, a bridge that stops answering, logs, forged lines ---------


def rich_bytes(result):
    """What a cell's display items and errors hold, as the caps count it."""
    from sandbox.image.outputs import json_size

    total = 0
    for output in result.outputs:
        if output["output_type"] in ("display_data", "execute_result"):
            total += sum(json_size(v) for v in output["data"].values())
        elif output["output_type"] == "error":
            total += json_size(output["evalue"]) + sum(json_size(t) for t in output["traceback"])
    return total


def test_display_data_of_every_kind_is_capped(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        from IPython.display import display
        big = 'x' * 3_000_000
        for i in range(50):
            display({'text/plain': big, 'text/html': big, 'application/json': {'v': big},
                     'text/markdown': str(i)}, raw=True)
        """,
        timeout=60,
    )
    assert result.status == "ok"
    limits = sandbox.limits
    assert rich_bytes(result) <= limits.display_bytes
    for output in result.outputs:
        values = output.get("data", {})
        assert sum(len(str(v)) for v in values.values()) <= limits.display_item_bytes
    # 50 items of 9 MB were sent; almost all of it was dropped, and counted
    assert result.dropped_display_bytes >= 50 * 9_000_000 - limits.display_bytes
    assert any("bytes of this output were dropped" in str(o.get("data")) for o in result.outputs)
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_an_enormous_error_is_capped(backend, neighbour, sandbox):
    result = run(
        sandbox,
        """
        def deep(n):
            if n == 0:
                raise ValueError('v' * 20_000_000)
            return deep(n - 1)
        deep(300)
        """,
        timeout=60,
    )
    assert result.status == "error"
    error = result.outputs[-1]
    assert error["ename"] == "ValueError"
    assert rich_bytes(result) <= sandbox.limits.display_item_bytes + 200
    assert result.dropped_display_bytes >= 19_000_000
    recover(sandbox)
    assert_unharmed(backend, neighbour)


def test_a_cell_that_stops_its_bridge(backend, neighbour, sandbox, runtime):
    """Under runc the bridge is PID 1 of its namespace and ignores the SIGSTOP; under
    gVisor it stops, and the host removes the sandbox once the grace periods pass."""
    limit, grace = 3.0, sandbox.limits.interrupt_grace
    code = "import os, signal, time\nos.kill(os.getppid(), signal.SIGSTOP)\ntime.sleep(60)"
    started = time.monotonic()
    result = sandbox.execute(code, timeout=limit)
    assert time.monotonic() - started < limit + 2 * grace + 5
    expected = {"runc": {"timeout"}, "runsc": {"died"}}.get(runtime, {"timeout", "died"})
    assert result.status in expected
    recover(sandbox)
    assert_unharmed(backend, neighbour)


@pytest.mark.parametrize("how", ["time-limit", "stop"])
def test_a_frozen_bridge_is_removed_and_the_cell_died(backend, neighbour, sandbox, how):
    limit, grace = 3.0, sandbox.limits.interrupt_grace
    container = backend.container_id(sandbox)
    if not container:
        pytest.skip("needs the sandbox's container on the local engine, to pause it")
    threading.Timer(0.5, lambda: backend.docker.api.pause(container)).start()
    started = time.monotonic()
    if how == "stop":
        result = sandbox.execute(
            "import time\ntime.sleep(60)",
            timeout=60,
            poll=lambda: time.monotonic() - started > limit,
        )
    else:
        result = sandbox.execute("import time\ntime.sleep(60)", timeout=limit)
    assert time.monotonic() - started < limit + 2 * grace + 5
    assert result.status == "died" and result.state_lost
    assert not sandbox.alive
    assert backend.gone(sandbox.id, within=60)
    recover(sandbox)
    assert_unharmed(backend, neighbour)


@docker_only
def test_the_daemon_keeps_no_log_of_a_sandbox(backend, neighbour, sandbox):
    client = backend.docker
    config = client.api.inspect_container(sandbox.id)
    assert config["HostConfig"]["LogConfig"]["Type"] == "none"
    result = run(
        sandbox,
        """
        block = b'e' * 2**20
        try:
            with open('/proc/1/fd/2', 'wb') as stderr:
                for _ in range(50):
                    stderr.write(block)
            print('written')
        except OSError as exc:
            print(type(exc).__name__)
        """,
        timeout=60,
    )
    assert result.status == "ok"
    log_path = client.api.inspect_container(sandbox.id)["LogPath"]
    assert not log_path or not os.path.exists(log_path) or os.path.getsize(log_path) < 1 << 20
    assert sum(len(line) for line in sandbox._conn.stderr) <= 50 * 2000
    recover(sandbox)
    assert_unharmed(backend, neighbour)


FORGER = """
import base64, json, os, re, threading, time
found = {}
FORGED_DATA = base64.b64encode(b"FORGED").decode()

def forge(path_in, path_out):
    try:
        with open(path_in, 'rb', buffering=0) as requests, open(path_out, 'wb', buffering=0) as out:
            found['opened'] = path_in
            while True:
                line = requests.read(65536)
                for rid in map(int, re.findall(rb'"id":(\\d+)', line)):
                    for forged_id in (rid, rid + 1, rid + 2, rid - 1):
                        for message in (
                            {"id": forged_id, "type": "chunk", "data": FORGED_DATA},
                            {"id": forged_id, "type": "output", "output": {"output_type": "stream",
                             "name": "stdout", "text": "FORGED\\n"}},
                            {"id": forged_id, "type": "done", "status": "ok", "files": [
                             {"path": "FORGED", "size": 1, "mtime_ns": 1}]},
                        ):
                            out.write(json.dumps(message).encode() + b"\\n")
    except OSError as exc:
        found.setdefault('refused', []).append(f"{path_in}: {type(exc).__name__}")

for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:
    pipes = (f'/proc/{pid}/fd/0', f'/proc/{pid}/fd/1')
    threading.Thread(target=forge, args=pipes, daemon=True).start()
time.sleep(0.5)
print(found.get('opened', 'nothing opened'))
"""


def test_forged_protocol_lines_are_not_taken(backend, neighbour, sandbox, runtime):
    sandbox.put_file("real.txt", b"real content")
    first = sandbox.execute(FORGER, timeout=10)
    seen = [first]
    if runtime == "runc":
        assert text_of(first) == "nothing opened\n"  # the bridge's pipes are out of reach
    # Under gVisor the kernel's threads can reach the pipes: they may swallow
    # requests (the sandbox then stops answering and is replaced) but every
    # forged line lacks the bridge's signature and is dropped.
    try:
        seen.append(sandbox.execute("print('next cell')", timeout=10))
        data = sandbox.get_file("real.txt")
        assert data == b"real content"
        listed = [f.path for f in sandbox.list_files()]
        assert "FORGED" not in listed
    except SandboxError:
        assert runtime != "runc"
    if runtime == "runc":
        assert text_of(seen[1]) == "next cell\n"
    for result in seen:
        assert "FORGED" not in json.dumps(result.outputs)
    recover(sandbox)
    assert_unharmed(backend, neighbour)
