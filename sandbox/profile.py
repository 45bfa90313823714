"""What a sandbox container may do: the options it is created with.

No network interface (or, with web access, one on the internal egress
network whose only reachable address is the proxy: sandbox/egress.py), no
capabilities, no privilege gain, a read-only root,
size- and inode-capped tmpfs for /tmp and /workspace, a non-root uid, caps on
pids, memory (no swap), CPU, open files, file size and core dumps, a private
IPC namespace, an empty environment (with web access: the proxy variables
only), and no log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from docker.types import LogConfig, Ulimit

from sandbox.api import Limits

SANDBOX_UID = 1000


@dataclass(frozen=True)
class WebAccess:
    """A sandbox's web access: the internal Docker network it joins and the proxy
    variables its programs get (chat/worker/egress.py makes one)."""

    network: str
    environment: dict[str, str] = field(default_factory=dict)


# gVisor registered without `--network=none`, for sandboxes on the egress network
# (scripts/bootstrap registers both): plain `runsc` keeps no network stack at all.
RUNSC_WITH_NETWORK = "runsc-net"


def container_options(limits: Limits, web: WebAccess | None = None) -> dict[str, Any]:
    """The arguments of docker-py's `create_container` besides image, labels and host config."""
    return {
        "command": ["--preload", ",".join(limits.preload)],
        "stdin_open": True,
        # detach: without it docker-py sets StdinOnce, and the first attach to
        # close would close the bridge's stdin for good.
        "detach": True,
        "tty": False,
        "user": f"{SANDBOX_UID}:{SANDBOX_UID}",
        "environment": dict(web.environment) if web else {},
        "network_disabled": web is None,
    }


def host_config(api: Any, limits: Limits, runtime: str | None, web: WebAccess | None = None) -> Any:
    tmpfs_opts = f"rw,nosuid,nodev,nr_inodes={limits.inodes}"
    return api.create_host_config(
        network_mode=web.network if web else "none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs={
            "/tmp": f"{tmpfs_opts},size={limits.tmp_bytes},mode=1777",
            "/workspace": f"{tmpfs_opts},size={limits.workspace_bytes},"
            f"uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755",
        },
        # No docker-init: the bridge is PID 1 so that no process the kernel can
        # inspect holds the protocol's pipes (it reaps orphans itself).
        init=False,
        pids_limit=limits.pids,
        mem_limit=limits.memory_bytes,
        memswap_limit=limits.memory_bytes,
        nano_cpus=int(limits.cpus * 1e9),
        ulimits=[
            Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
            Ulimit(name="fsize", soft=limits.fsize_bytes, hard=limits.fsize_bytes),
            Ulimit(name="core", soft=0, hard=0),
        ],
        runtime=runtime or None,
        ipc_mode="private",
        # Nothing reads container logs (stderr comes over the attach stream), and
        # any log the daemon keeps is host disk that code could fill.
        log_config=LogConfig(type=LogConfig.types.NONE),
    )
