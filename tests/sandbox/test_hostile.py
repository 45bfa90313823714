"""Hostile programs: each ends as expected, and nothing else is harmed.

Every case runs in a fresh sandbox beside a long-lived neighbour; afterwards
the neighbour must answer promptly with its state intact, the Docker engine
must respond and the host's PostgreSQL and Redis must still answer.
"""

import json
import os
import textwrap

import pytest

from sandbox.api import SandboxError
from tests.sandbox.conftest import assert_unharmed, make_sandbox, recover, text_of

pytestmark = pytest.mark.integration


def run(box, code, **kwargs):
    return box.execute(textwrap.dedent(code), **kwargs)


def test_fork_bomb(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


def test_shell_fork_bomb(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


def test_thread_bomb(client, neighbour, sandbox):
    result = run(
        sandbox,
        """
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
        """,
    )
    # runc: the pids limit stops thread creation (RuntimeError); gVisor counts
    # threads differently and the cell runs into the time limit instead.
    assert result.status in {"error", "timeout"}
    if result.status == "error":
        assert result.outputs[-1]["ename"] == "RuntimeError"
    recover(sandbox)
    assert_unharmed(client, neighbour)


def test_memory_bomb(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


@pytest.mark.parametrize("directory", ["/tmp", "/workspace"])
def test_filling_a_tmpfs(client, neighbour, sandbox, directory):
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
    assert_unharmed(client, neighbour)


def test_a_million_small_files(client, neighbour, sandbox, runtime):
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
    assert_unharmed(client, neighbour)


def test_infinite_printing(client, neighbour, sandbox):
    result = run(sandbox, "while True:\n    print('x' * 200)")
    assert result.status == "timeout"
    stored = sum(len(o["text"]) for o in result.outputs if o["output_type"] == "stream")
    assert stored <= 1 << 20
    assert result.dropped_stream_bytes > 0
    recover(sandbox)
    assert_unharmed(client, neighbour)


def test_one_100_mb_line(client, neighbour, runtime):
    # The line and its copies (kernel, message, bridge) need the production
    # memory limit rather than the suite's smaller one.
    from dataclasses import replace

    from tests.sandbox.conftest import TEST_LIMITS

    sandbox = make_sandbox(client, runtime, replace(TEST_LIMITS, memory_bytes=1024 << 20))
    try:
        result = run(sandbox, "print('y' * 100_000_000)", timeout=60)
    finally:
        sandbox.close()
    assert result.status == "ok"
    stored = sum(len(o["text"]) for o in result.outputs if o["output_type"] == "stream")
    assert 0 < stored <= 1 << 20
    assert result.dropped_stream_bytes >= 100_000_000 - (1 << 20)
    assert_unharmed(client, neighbour)


def test_ten_thousand_display_calls(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


def test_a_20000_by_20000_image(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


def test_a_busy_loop_past_the_time_limit(client, neighbour, sandbox):
    sandbox.execute("state = 42")
    result = run(sandbox, "while True:\n    pass")
    assert result.status == "timeout"
    assert 4 <= result.duration < 4 + 2 + 3
    assert text_of(sandbox.execute("print(state)")) == "42\n"
    assert_unharmed(client, neighbour)


@pytest.mark.parametrize(
    "code",
    [
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "import ctypes\nctypes.CDLL(None).sleep(1000)",
    ],
    ids=["ignores-sigint", "c-level-sleep"],
)
def test_code_that_resists_the_interrupt(client, neighbour, sandbox, code):
    result = sandbox.execute(code)
    assert result.status == "timeout"
    assert result.duration < 4 + 2 + 10
    recover(sandbox)
    assert_unharmed(client, neighbour)


def test_a_daemon_does_not_leak_output_into_the_next_cell(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


def test_the_network_is_unreachable(client, neighbour, sandbox):
    # First prove there is no interface but loopback: then no packet can leave,
    # whatever the connection attempts below do.
    interfaces = text_of(sandbox.execute("import os\nprint(sorted(os.listdir('/sys/class/net')))"))
    assert interfaces.strip() == "['lo']"
    result = run(
        sandbox,
        """
        import json, socket
        targets = {"public": ("203.0.113.7", 80), "dns-server": ("192.0.2.53", 53),
                   "bridge-gateway": ("172.17.0.1", 2375), "host-postgres": ("127.0.0.1", 5432),
                   "host-redis": ("127.0.0.1", 6379), "metadata": ("169.254.169.254", 80)}
        outcome = {}
        for name, address in targets.items():
            try:
                socket.create_connection(address, timeout=2).close()
                outcome[name] = "connected"
            except OSError as exc:
                outcome[name] = type(exc).__name__
        try:
            socket.getaddrinfo("example.com", 443)
            outcome["dns"] = "resolved"
        except OSError as exc:
            outcome["dns"] = type(exc).__name__
        print(json.dumps(outcome))
        """,
        timeout=30,
    )
    outcome = json.loads(text_of(result))
    assert "connected" not in outcome.values(), outcome
    assert outcome["dns"] != "resolved"
    assert_unharmed(client, neighbour)


def test_no_secret_reaches_the_sandbox(client, neighbour, sandbox, monkeypatch):
    monkeypatch.setenv("CODEACT_MODEL_API_KEY", "sk-host-secret-do-not-leak")
    box = make_sandbox(client, "runc" if sandbox.runtime is None else sandbox.runtime)
    try:
        result = run(
            box,
            """
            import os
            print(sorted(os.environ))
            print(open("/proc/1/environ").read())
            print(os.path.exists("/run/secrets"), os.path.exists("/var/run/docker.sock"),
                  os.path.exists("/run/docker.sock"))
            """,
        )
    finally:
        box.close()
    text = text_of(result)
    for secret in ("sk-host-secret", "SECRET_KEY", "DATABASE_URL", "API_KEY", "REDIS_URL"):
        assert secret not in text
    assert text.strip().endswith("False False False")
    assert os.environ["CODEACT_MODEL_API_KEY"] == "sk-host-secret-do-not-leak"
    assert_unharmed(client, neighbour)


def test_privilege_escalation_fails(client, neighbour, sandbox):
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
    if sandbox.runtime is None:
        # Under gVisor a user namespace lives in its own kernel: no host privilege.
        assert lines["unshare"] != "0"
    assert lines["mount"] != "0"
    assert lines["setuid"] == "refused"
    assert lines["uid"] == "1000 1000"
    assert_unharmed(client, neighbour)


def test_the_root_filesystem_is_read_only(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


def test_link_and_fifo_tricks_against_get_file(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)


def test_kill_everything_then_the_kernel_comes_back(client, neighbour, sandbox):
    result = sandbox.execute("import os\nos.kill(-1, 9)")
    assert result.status == "died"
    assert result.state_lost
    sandbox.restart()
    assert text_of(sandbox.execute("print(6 * 7)")) == "42\n"
    assert_unharmed(client, neighbour)


def test_one_sandbox_cannot_see_another(client, neighbour, sandbox):
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
    assert_unharmed(client, neighbour)
