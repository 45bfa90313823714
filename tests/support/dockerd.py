"""A second Docker engine on this machine, for the several-hosts tests: its own
socket, data root, exec root, pid file and default bridge, and no iptables rules
(sandboxes have no network), started from the machine's dockerd binary.

Not `--bridge=none`: a dockerd started so deletes the interface named docker0 --
the first engine's bridge. The second one gets a bridge of its own, made here on
an address range nothing else here uses (100.64.213.0/24, shared address space).
The sandbox image is copied into it over the API (save from the first engine,
load into the second), as an operator would preload a new host."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import docker


class Engine:
    """A dockerd this test started; `stop()` ends it, as a host that goes away."""

    BRIDGE = "codeact-br2"

    def __init__(self, root: str) -> None:
        self.root = root
        self.socket = os.path.join(root, "docker.sock")
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        config = os.path.join(self.root, "daemon.json")
        with open(config, "w") as out:
            json.dump({}, out)  # not the machine's /etc/docker/daemon.json
        if subprocess.run(["ip", "link", "show", self.BRIDGE], capture_output=True).returncode:
            for command in (
                ["ip", "link", "add", self.BRIDGE, "type", "bridge"],
                ["ip", "addr", "add", "100.64.213.1/24", "dev", self.BRIDGE],
                ["ip", "link", "set", self.BRIDGE, "up"],
            ):
                subprocess.run(command, check=True, capture_output=True)
        log = open(os.path.join(self.root, "dockerd.log"), "ab")  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen(
            [
                shutil.which("dockerd") or "dockerd",
                f"--config-file={config}",
                f"--host={self.url}",
                f"--data-root={os.path.join(self.root, 'data')}",
                f"--exec-root={os.path.join(self.root, 'exec')}",
                f"--pidfile={os.path.join(self.root, 'docker.pid')}",
                f"--bridge={self.BRIDGE}",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                # Its own namespaces, should it share a containerd with the first one.
                "--containerd-namespace=codeact-second",
                "--containerd-plugins-namespace=codeact-second-plugins",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the second dockerd exited; see {self.root}/dockerd.log")
            with contextlib.suppress(Exception):
                if self.client(timeout=5).ping():
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the second dockerd did not answer; see {self.root}/dockerd.log")

    def client(self, timeout: float = 120) -> Any:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=timeout)

    def load_image(self, source: Any, tag: str) -> None:
        """Copy an image from another engine's client into this one."""
        target = self.client(timeout=600)
        with contextlib.suppress(docker.errors.ImageNotFound):
            target.images.get(tag)
            return
        target.images.load(source.api.get_image(tag, chunk_size=1 << 20))

    def stop(self) -> None:
        """SIGTERM, as a host shut down; its containers stop with it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@contextlib.contextmanager
def second_engine(image: str, source: Any) -> Iterator[Engine]:
    """A running second engine holding `image` (copied from the `source` client)."""
    root = tempfile.mkdtemp(prefix="codeact-dockerd-", dir="/var/tmp")
    engine = Engine(root)
    try:
        engine.start()
        engine.load_image(source, image)
        yield engine
    finally:
        if engine.process is not None and engine.process.poll() is None:
            with contextlib.suppress(Exception):
                client = engine.client(timeout=30)
                for container in client.containers.list(all=True):
                    container.remove(force=True)
        engine.stop()
        subprocess.run(["umount", "-R", os.path.join(root, "data")], capture_output=True)
        subprocess.run(["ip", "link", "delete", Engine.BRIDGE], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
