"""An EMULATED Kubernetes API server for tests: NOT a real kube-apiserver.

No real API server, kubelet or container runtime interface can run on this
machine, so the Kubernetes backend (sandbox/kubernetes_backend.py) is tested
against this stand-in. It speaks the real wire protocol the official Python
client and websocket-client use, for the calls the backend makes and nothing
more: pods create (POST), get, list (labelSelector, fieldSelector
metadata.name, limit), watch (`?watch=true`: JSON lines of ADDED, MODIFIED,
DELETED), delete, and the `attach` websocket under `v5.channel.k8s.io` and
`v4.channel.k8s.io` (a channel byte, then data). Errors are `Status` objects
with the codes a real server gives (401, 403, 404, 409, 422).

Each pod is backed by a real container of the real sandbox image on the local
Docker engine (docker-py), translating the pod spec as a kubelet would:
securityContext → user, cap_drop, no-new-privileges, read-only root; memory
emptyDirs → tmpfs of their sizeLimit; limits → memory and CPU;
runtimeClassName → a Docker runtime (a mapping given to the server, e.g.
{"gvisor": "runsc"}; an unknown class is refused as the RuntimeClass
admission plugin does); no network (network_mode none) unless the pod carries
the label codeact.web=1 and a network was given. `ephemeral-storage` is
ignored: Docker cannot cap a container's log and scratch space that way. A
kubelet's podPidsLimit is emulated by `pod_pids_limit`. The pod's status
follows its container: Pending → Running → Succeeded/Failed; an image that is
not on the engine gives ErrImagePull then ImagePullBackOff (nothing is ever
pulled).

For tests: `restart()` drops every open attach websocket and watch and answers
503 for a moment (an API server restart); `deny(verb, resource)` answers 403
as RBAC would; `requests` counts calls by kind, so a test can assert that no
exec or port-forward was used.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import secrets
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from aiohttp import WSMsgType, web
from docker.types import LogConfig

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
EMULATOR_LABEL = "codeact.kube-emulator"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(?:/([^/]+))?$")


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("512Mi", "1500m", "2", "1e3", "1G") as a number."""
    text = str(value).strip()
    match = re.fullmatch(r"([0-9.eE+-]+?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?", text)
    if not match:
        raise ValueError(f"quantities must match the regular expression: {text!r}")
    number = float(match.group(1))
    factor = {
        None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
        "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
    }[match.group(2)]  # fmt: skip
    return number * factor


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, **details: Any) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }
    return web.json_response(body, status=code)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: k=v, k==v, k!=v, k, !k (comma = and)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_matches(selector: str, pod: dict[str, Any]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.replace("==", "=").partition("=")
        actual = {
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": pod["metadata"]["namespace"],
            "status.phase": pod["status"].get("phase", ""),
        }.get(key)
        if actual is None:
            raise ValueError(f'"{key}" is not a known field selector')
        if actual != value:
            return False
    return True


@dataclass
class Pod:
    namespace: str
    name: str
    body: dict[str, Any]
    container_id: str = ""
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


class EmulatedKubeAPI:
    """The emulated API server, on 127.0.0.1 in a thread of its own (see the module doc)."""

    def __init__(
        self,
        docker_client: Any,
        runtimes: dict[str, str] | None = None,
        web_network: str = "",
        token: str = "",
        protocols: tuple[str, ...] = (V5, V4),
        pod_pids_limit: int = 1024,
    ) -> None:
        self.docker = docker_client
        self.runtimes = dict(runtimes or {})
        self.web_network = web_network
        self.token = token or secrets.token_hex(16)
        self.protocols = protocols
        self.pod_pids_limit = pod_pids_limit
        self.server_id = uuid.uuid4().hex[:12]
        self.requests: Counter[str] = Counter()
        self.denied: set[tuple[str, str]] = set()
        self.pods: dict[tuple[str, str], Pod] = {}
        self.version = 1
        self.history: list[tuple[int, str, dict[str, Any]]] = []  # (rv, type, pod)
        self.watchers: set[asyncio.Queue[Any]] = set()
        self.down_until = 0.0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # --- running it ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatedKubeAPI:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._serve())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="kube-api-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the emulated API server did not start")
        return self

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", self._route)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                self.call(self._drop_streams())
                self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self.remove_containers()

    def remove_containers(self) -> None:
        """Remove every container this server made (running or not)."""
        for container in self.docker.containers.list(
            all=True, filters={"label": f"{EMULATOR_LABEL}={self.server_id}"}
        ):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    def write_kubeconfig(self, path: Path, namespace: str) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "worker", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "emulated",
                    "context": {"cluster": "emulated", "user": "worker", "namespace": namespace},
                }
            ],
            "current-context": "emulated",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # --- what tests do to it ----------------------------------------------------

    def restart(self, downtime: float = 0.5) -> None:
        """As an API server restart: every attach websocket and watch drops, and
        for `downtime` seconds every request gets 503. Pods and containers stay."""
        self.down_until = time.monotonic() + downtime
        self.call(self._drop_streams())

    def deny(self, verb: str, resource: str = "pods") -> None:
        """Answer 403 to this verb on this resource (pods, pods/attach), as RBAC would."""
        self.denied.add((verb, resource))

    def allow_all(self) -> None:
        self.denied.clear()

    def container_of(self, namespace: str, name: str) -> str:
        pod = self.pods.get((namespace, name))
        return pod.container_id if pod else ""

    async def _drop_streams(self) -> None:
        for pod in list(self.pods.values()):
            for ws in list(pod.sockets):
                await ws.close(code=1012, message=b"the API server is restarting")
        for queue in list(self.watchers):
            queue.put_nowait(None)

    # --- HTTP -------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        kind = self._kind(request)
        self.requests[kind] += 1
        self.requests["total"] += 1
        if time.monotonic() < self.down_until:
            return status(503, "ServiceUnavailable", "the API server is restarting")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def _kind(request: web.Request) -> str:
        match = POD_PATH.match(request.path)
        if not match:
            return "other"
        if match.group(3):
            return match.group(3)  # attach, exec, portforward, log, ...
        if match.group(2):
            return f"pod.{request.method.lower()}"
        watching = request.query.get("watch", "").lower() in ("true", "1")
        return "pods.watch" if watching else f"pods.{request.method.lower()}"

    def _forbidden(self, verb: str, resource: str, namespace: str) -> web.Response | None:
        if (verb, resource) not in self.denied:
            return None
        group, _, sub = resource.partition("/")
        what = f'resource "{group}"' + (f' subresource "{sub}"' if sub else "")
        return status(
            403,
            "Forbidden",
            f'{resource} is forbidden: User "system:serviceaccount:{namespace}:codeact-worker" '
            f'cannot {verb} {what} in API group "" in the namespace "{namespace}"',
            kind=group,
        )

    async def _route(self, request: web.Request) -> web.StreamResponse:
        match = POD_PATH.match(request.path)
        if not match:
            if request.path == "/version":
                return web.json_response({"major": "1", "minor": "31", "gitVersion": "emulated"})
            return status(404, "NotFound", "the server could not find the requested resource")
        namespace, name, sub = match.groups()
        method = request.method
        if sub == "attach":
            return await self._attach(request, namespace, name)
        if sub:
            verb = "create" if method in ("GET", "POST") else method.lower()
            return self._forbidden(verb, f"pods/{sub}", namespace) or status(
                404, "NotFound", f"the emulated API server does not serve pods/{sub}"
            )
        if name is None and method == "POST":
            return self._forbidden("create", "pods", namespace) or await self._create(
                request, namespace
            )
        if name is None and method == "GET":
            watching = request.query.get("watch", "").lower() in ("true", "1")
            verb = "watch" if watching else "list"
            denied = self._forbidden(verb, "pods", namespace)
            if denied:
                return denied
            if watching:
                return await self._watch(request, namespace)
            return self._list(request, namespace)
        if name is not None and method == "GET":
            return self._forbidden("get", "pods", namespace) or self._get(namespace, name)
        if name is not None and method == "DELETE":
            return self._forbidden("delete", "pods", namespace) or await self._delete(
                namespace, name
            )
        return status(405, "MethodNotAllowed", f"{method} is not supported here")

    # --- pods -------------------------------------------------------------------

    def _bump(self, pod: Pod, kind: str) -> None:
        self.version += 1
        pod.body["metadata"]["resourceVersion"] = str(self.version)
        snapshot = json.loads(json.dumps(pod.body))
        self.history.append((self.version, kind, snapshot))
        del self.history[:-1000]
        for queue in list(self.watchers):
            queue.put_nowait((kind, snapshot))

    async def _create(self, request: web.Request, namespace: str) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return status(400, "BadRequest", "the body is not JSON")
        problems = self._validate(body)
        if problems:
            name = (body.get("metadata") or {}).get("name", "")
            return status(
                422,
                "Invalid",
                f'Pod "{name}" is invalid: ' + "; ".join(problems),
                name=name,
                kind="Pod",
                causes=[{"message": p} for p in problems],
            )
        meta = body["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta["name"]
        if (namespace, name) in self.pods:
            return status(409, "AlreadyExists", f'pods "{name}" already exists', name=name)
        spec = body["spec"]
        runtime_class = spec.get("runtimeClassName")
        if runtime_class and runtime_class not in self.runtimes:
            return status(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: pod rejected: RuntimeClass "{runtime_class}" '
                "not found",
                name=name,
                kind="pods",
            )
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=now_rfc3339(),
            labels=meta.get("labels") or {},
            annotations=meta.get("annotations") or {},
        )
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("nodeName", "emulated-node")
        container = spec["containers"][0]
        body["status"] = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}
            ],
            "containerStatuses": [self._container_status(container, waiting="ContainerCreating")],
            "qosClass": "Guaranteed",
        }
        pod = Pod(namespace, name, body)
        self.pods[(namespace, name)] = pod
        self._bump(pod, "ADDED")
        asyncio.get_running_loop().create_task(self._run(pod))
        return web.json_response(body, status=201)

    @staticmethod
    def _validate(body: Any) -> list[str]:
        if not isinstance(body, dict) or body.get("kind", "Pod") != "Pod":
            return ["kind: Invalid value: must be Pod"]
        problems = []
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if not name and not meta.get("generateName"):
            problems.append("metadata.name: Required value: name or generateName is required")
        elif name and (len(name) > 63 or not NAME.match(name)):
            problems.append(f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 label')
        spec = body.get("spec")
        containers = (spec or {}).get("containers") or []
        if not containers:
            problems.append("spec.containers: Required value")
        for index, container in enumerate(containers):
            where = f"spec.containers[{index}]"
            if not container.get("name"):
                problems.append(f"{where}.name: Required value")
            elif not NAME.match(container["name"]):
                problems.append(f"{where}.name: Invalid value: {container['name']!r}")
            if not container.get("image"):
                problems.append(f"{where}.image: Required value")
            resources = container.get("resources") or {}
            for kind in ("limits", "requests"):
                for key, value in (resources.get(kind) or {}).items():
                    try:
                        parse_quantity(value)
                    except ValueError as exc:
                        problems.append(f"{where}.resources.{kind}[{key}]: Invalid value: {exc}")
            mounts = {v.get("name") for v in (spec or {}).get("volumes") or []}
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in mounts:
                    problems.append(f"{where}.volumeMounts.name: Not found: {mount.get('name')!r}")
        policy = (spec or {}).get("restartPolicy", "Always")
        if policy not in ("Always", "OnFailure", "Never"):
            problems.append(f"spec.restartPolicy: Unsupported value: {policy!r}")
        return problems

    @staticmethod
    def _container_status(
        container: dict[str, Any],
        waiting: str = "",
        message: str = "",
        running: str = "",
        terminated: dict[str, Any] | None = None,
        container_id: str = "",
    ) -> dict[str, Any]:
        if terminated is not None:
            state: dict[str, Any] = {"terminated": terminated}
        elif running:
            state = {"running": {"startedAt": running}}
        else:
            state = {"waiting": {"reason": waiting, **({"message": message} if message else {})}}
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "containerID": f"docker://{container_id}" if container_id else "",
            "ready": bool(running),
            "started": bool(running),
            "restartCount": 0,
            "state": state,
            "lastState": {},
        }

    async def _run(self, pod: Pod) -> None:
        """The kubelet's part: create and start the container, then follow it."""
        container = pod.body["spec"]["containers"][0]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.docker.images.get, container["image"])
        except docker.errors.ImageNotFound:
            await self._image_missing(pod, container)
            return
        try:
            container_id = await loop.run_in_executor(None, self._create_container, pod)
        except (docker.errors.APIError, ValueError) as exc:
            self._set_status(pod, waiting="CreateContainerError", message=str(exc)[:300])
            return
        pod.container_id = container_id
        if (pod.namespace, pod.name) not in self.pods:  # deleted meanwhile
            await loop.run_in_executor(None, self._remove_container, container_id)
            return
        try:
            await loop.run_in_executor(None, self.docker.api.start, container_id)
        except docker.errors.APIError as exc:
            self._set_status(pod, waiting="RunContainerError", message=str(exc)[:300])
            return
        ip = ""
        if self.web_network and pod.body["metadata"]["labels"].get("codeact.web") == "1":
            info = await loop.run_in_executor(None, self.docker.api.inspect_container, container_id)
            network = info["NetworkSettings"]["Networks"].get(self.web_network) or {}
            ip = network.get("IPAddress", "")
        pod.body["status"].update(
            phase="Running",
            startTime=now_rfc3339(),
            podIP=ip or f"10.244.0.{1 + secrets.randbelow(250)}",
            hostIP="127.0.0.1",
        )
        self._set_status(pod, running=now_rfc3339(), container_id=container_id)
        exit_info = await loop.run_in_executor(None, self._wait_container, container_id)
        if (pod.namespace, pod.name) not in self.pods or exit_info is None:
            return
        code, oom = exit_info
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        pod.body["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        self._set_status(
            pod,
            terminated={"exitCode": code, "reason": reason, "finishedAt": now_rfc3339()},
            container_id=container_id,
        )
        for ws in list(pod.sockets):
            with contextlib.suppress(Exception):
                await ws.send_bytes(b"\x03" + json.dumps(_stream_status(code)).encode())
                await ws.close()

    async def _image_missing(self, pod: Pod, container: dict[str, Any]) -> None:
        message = f'Failed to pull image "{container["image"]}": the emulated node has no registry'
        self._set_status(pod, waiting="ErrImagePull", message=message)
        await asyncio.sleep(1)
        if (pod.namespace, pod.name) in self.pods:
            self._set_status(
                pod,
                waiting="ImagePullBackOff",
                message=f'Back-off pulling image "{container["image"]}"',
            )

    def _set_status(self, pod: Pod, **state: Any) -> None:
        if (pod.namespace, pod.name) not in self.pods:
            return
        container = pod.body["spec"]["containers"][0]
        pod.body["status"]["containerStatuses"] = [self._container_status(container, **state)]
        self._bump(pod, "MODIFIED")

    def _create_container(self, pod: Pod) -> str:
        """The pod spec as Docker options (see the module doc for what maps to what)."""
        spec = pod.body["spec"]
        container = spec["containers"][0]
        pod_security = spec.get("securityContext") or {}
        security = {**pod_security, **(container.get("securityContext") or {})}
        limits = (container.get("resources") or {}).get("limits") or {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        tmpfs = {}
        for mount in container.get("volumeMounts") or []:
            empty = volumes[mount["name"]].get("emptyDir")
            if empty is None or empty.get("medium") != "Memory":
                raise ValueError(f"the emulator mounts only memory emptyDirs ({mount['name']})")
            options = ["rw", "nosuid", "nodev", "mode=0777"]
            if "sizeLimit" in empty:
                options.append(f"size={int(parse_quantity(empty['sizeLimit']))}")
            if "fsGroup" in pod_security:
                options.append(f"gid={int(pod_security['fsGroup'])}")
            # A kubelet makes an emptyDir 0777; under runc, Docker copies the image
            # directory's mode (0755) onto the tmpfs instead of `mode`, so the pod's
            # user gets the directory as its owner: the same right to write in it.
            if "runAsUser" in (container.get("securityContext") or {}) | pod_security:
                owner = {**pod_security, **(container.get("securityContext") or {})}
                options.append(f"uid={int(owner['runAsUser'])}")
            tmpfs[mount["mountPath"]] = ",".join(options)
        user = ""
        if "runAsUser" in security:
            user = str(security["runAsUser"])
            if "runAsGroup" in security:
                user += f":{security['runAsGroup']}"
        elif security.get("runAsNonRoot"):
            raise ValueError("runAsNonRoot without runAsUser: the emulator cannot verify the image")
        capabilities = security.get("capabilities") or {}
        web_pod = pod.body["metadata"]["labels"].get("codeact.web") == "1"
        network = self.web_network if web_pod and self.web_network else "none"
        host_config = self.docker.api.create_host_config(
            network_mode=network,
            cap_drop=capabilities.get("drop") or None,
            cap_add=capabilities.get("add") or None,
            security_opt=(
                ["no-new-privileges"] if security.get("allowPrivilegeEscalation") is False else None
            ),
            read_only=bool(security.get("readOnlyRootFilesystem")),
            privileged=bool(security.get("privileged")),
            tmpfs=tmpfs,
            mem_limit=int(parse_quantity(limits["memory"])) if "memory" in limits else None,
            memswap_limit=int(parse_quantity(limits["memory"])) if "memory" in limits else None,
            nano_cpus=int(parse_quantity(limits["cpu"]) * 1e9) if "cpu" in limits else None,
            # ephemeral-storage: ignored (Docker has no such cap for a container's log
            # and scratch space); the kubelet's podPidsLimit:
            pids_limit=self.pod_pids_limit or None,
            runtime=self.runtimes.get(spec.get("runtimeClassName") or "") or None,
            ipc_mode="private",
            init=False,
            log_config=LogConfig(type=LogConfig.types.NONE),
        )
        created = self.docker.api.create_container(
            container["image"],
            command=container.get("args"),
            entrypoint=container.get("command"),
            user=user or None,
            environment={e["name"]: e.get("value", "") for e in container.get("env") or []},
            stdin_open=bool(container.get("stdin")),
            tty=bool(container.get("tty")),
            detach=True,  # StdinOnce false: the first attach to close keeps stdin open
            network_disabled=network == "none",
            labels={
                EMULATOR_LABEL: self.server_id,
                "codeact.kube-emulator.pod": f"{pod.namespace}/{pod.name}",
            },
            host_config=host_config,
            name=f"kemu-{self.server_id}-{pod.name}"[:120],
        )
        return str(created["Id"])

    def _wait_container(self, container_id: str) -> tuple[int, bool] | None:
        try:
            result = self.docker.api.wait(container_id, timeout=None)
            state = self.docker.api.inspect_container(container_id)["State"]
        except (docker.errors.APIError, Exception):
            return None
        return int(result.get("StatusCode", 1)), bool(state.get("OOMKilled"))

    def _remove_container(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.docker.api.remove_container(container_id, force=True)

    def _get(self, namespace: str, name: str) -> web.Response:
        pod = self.pods.get((namespace, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        return web.json_response(pod.body)

    def _selected(self, request: web.Request, namespace: str) -> list[dict[str, Any]]:
        labels = request.query.get("labelSelector", "")
        fields = request.query.get("fieldSelector", "")
        return [
            pod.body
            for pod in self.pods.values()
            if pod.namespace == namespace
            and selector_matches(labels, pod.body["metadata"]["labels"])
            and field_matches(fields, pod.body)
        ]

    def _list(self, request: web.Request, namespace: str) -> web.Response:
        try:
            items = self._selected(request, namespace)
        except ValueError as exc:
            return status(400, "BadRequest", str(exc))
        limit = int(request.query.get("limit") or 0)
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.version)},
                "items": items[:limit] if limit else items,
            }
        )

    async def _watch(self, request: web.Request, namespace: str) -> web.StreamResponse:
        labels = request.query.get("labelSelector", "")
        fields = request.query.get("fieldSelector", "")
        try:
            self._selected(request, namespace)
        except ValueError as exc:
            return status(400, "BadRequest", str(exc))
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        since = request.query.get("resourceVersion", "")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if since and since != "0":
            for version, kind, body in self.history:
                if version > int(since):
                    queue.put_nowait((kind, body))
        else:
            for body in self._selected(request, namespace):
                queue.put_nowait(("ADDED", json.loads(json.dumps(body))))
        self.watchers.add(queue)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item is None:  # a restart: drop the connection without a clean end
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                kind, body = item
                if body["metadata"]["namespace"] != namespace:
                    continue
                if not selector_matches(labels, body["metadata"]["labels"]):
                    continue
                if not field_matches(fields, body):
                    continue
                line = json.dumps({"type": kind, "object": body}) + "\n"
                await response.write(line.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.discard(queue)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _delete(self, namespace: str, name: str) -> web.Response:
        pod = self.pods.get((namespace, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        pod.body["metadata"]["deletionTimestamp"] = now_rfc3339()
        pod.body["metadata"]["deletionGracePeriodSeconds"] = 0
        self._bump(pod, "MODIFIED")
        for ws in list(pod.sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if pod.container_id:
            await asyncio.get_running_loop().run_in_executor(
                None, self._remove_container, pod.container_id
            )
        self.pods.pop((namespace, name), None)
        self._bump(pod, "DELETED")
        return web.json_response(pod.body)

    # --- attach ------------------------------------------------------------------

    async def _attach(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        denied = self._forbidden("create", "pods/attach", namespace)
        if denied:
            return denied
        pod = self.pods.get((namespace, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        phase = pod.body["status"]["phase"]
        if phase in ("Succeeded", "Failed"):
            return status(
                400,
                "BadRequest",
                f"cannot attach to a container in a completed pod; current phase is {phase}",
            )
        container = pod.body["spec"]["containers"][0]
        wanted = request.query.get("container") or container["name"]
        if wanted != container["name"]:
            return status(400, "BadRequest", f"container {wanted} is not valid for pod {name}")
        if phase != "Running" or not pod.container_id:
            return status(
                400, "BadRequest", f"container {wanted} in pod {name} is waiting to start"
            )
        if request.query.get("stdin") in ("true", "1") and not container.get("stdin"):
            return status(400, "BadRequest", f"stdin is not enabled for container {wanted}")
        ws = web.WebSocketResponse(protocols=self.protocols, max_msg_size=0, autoping=True)
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if not any(p in self.protocols for p in offered):
            return status(400, "BadRequest", "no supported stream protocol was offered")
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        try:
            attached = await loop.run_in_executor(
                None,
                lambda: self.docker.api.attach_socket(
                    pod.container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                ),
            )
        except docker.errors.APIError as exc:
            await ws.send_bytes(b"\x03" + json.dumps(_stream_status(1, str(exc))).encode())
            await ws.close()
            return ws
        sock: socket.socket = getattr(attached, "_sock", attached)
        sock.setblocking(False)
        pod.sockets.add(ws)
        out = loop.create_task(self._container_to_ws(sock, ws))
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY and message.data:
                    channel, data = message.data[0], message.data[1:]
                    if channel == 0 and data:
                        await loop.sock_sendall(sock, data)
                    # 255 (v5: close a channel) and others: ignored (stdin stays open)
                elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            pod.sockets.discard(ws)
            out.cancel()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with contextlib.suppress(Exception):
                attached.close()
        return ws

    async def _container_to_ws(self, sock: socket.socket, ws: web.WebSocketResponse) -> None:
        """Docker's multiplexed stream (8-byte headers) as channel-prefixed messages."""
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        try:
            while True:
                data = await loop.sock_recv(sock, 1 << 16)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 8:
                    kind, size = struct.unpack(">BxxxL", buffer[:8])
                    if len(buffer) < 8 + size:
                        break
                    payload = bytes(buffer[8 : 8 + size])
                    del buffer[: 8 + size]
                    if kind in (1, 2):
                        await ws.send_bytes(bytes([kind]) + payload)
            await ws.send_bytes(b"\x03" + json.dumps(_stream_status(0)).encode())
            await ws.close()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass


def _stream_status(code: int, message: str = "") -> dict[str, Any]:
    if code == 0 and not message:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": message or f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


# --- pytest fixtures (registered by tests/sandbox/conftest.py) ---------------------


@dataclass
class KubeTarget:
    """Where the Kubernetes tests run: the emulator, or a real cluster."""

    kubeconfig: str
    namespace: str
    runtime_class: str
    # The Docker runtime the runtime class maps to ("" on a real cluster: unknown).
    docker_runtime: str
    emulator: EmulatedKubeAPI | None = None


def real_cluster_wanted() -> bool:
    return os.environ.get("CODEACT_TEST_K8S", "").lower() == "real"


def docker_runtimes(client: Any) -> set[str]:
    return set((client.info().get("Runtimes") or {}).keys())


@pytest.fixture(scope="session")
def kube_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeTarget]:
    """The emulated API server (default), or the cluster that CODEACT_TEST_KUBECONFIG /
    KUBECONFIG points at when CODEACT_TEST_K8S=real (skipped when none answers)."""
    if real_cluster_wanted():
        yield _real_cluster()
        return
    client = docker.from_env(version="auto", timeout=120)
    runtimes = {"gvisor": "runsc"} if "runsc" in docker_runtimes(client) else {}
    server = EmulatedKubeAPI(client, runtimes=runtimes).start()
    namespace = "codeact-sandboxes"
    path = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", namespace)
    try:
        # The suites' pods run under runc: what they check of the Kubernetes path
        # (pod, watch, attach, re-attach) does not depend on the runtime, gVisor is
        # covered by the docker-runsc rows, and runc keeps CI within its budget.
        # test_kubernetes checks that the gvisor class does give runsc.
        yield KubeTarget(
            kubeconfig=str(path),
            namespace=namespace,
            runtime_class="",
            docker_runtime="runc",
            emulator=server,
        )
    finally:
        server.stop()


def _real_cluster() -> KubeTarget:
    from sandbox.api import SandboxError
    from sandbox.kubernetes_backend import KubernetesBackend, load_api_client

    kubeconfig = os.environ.get("CODEACT_TEST_KUBECONFIG") or os.environ.get("KUBECONFIG", "")
    namespace = os.environ.get("CODEACT_TEST_K8S_NAMESPACE", "codeact-sandboxes-test")
    try:
        backend = KubernetesBackend(load_api_client(kubeconfig), namespace)
    except SandboxError as exc:
        pytest.skip(f"CODEACT_TEST_K8S=real but no cluster is configured: {exc.message}")
    if not backend.answers():
        pytest.skip(f"CODEACT_TEST_K8S=real but {backend.host} does not answer")
    return KubeTarget(
        kubeconfig=kubeconfig,
        namespace=namespace,
        runtime_class=os.environ.get("CODEACT_TEST_K8S_RUNTIME_CLASS", ""),
        docker_runtime="",
    )


@pytest.fixture
def kube_emulator(kube_target: KubeTarget) -> Iterator[EmulatedKubeAPI]:
    """The emulated API server itself (tests that restart it or deny calls); its
    denials are lifted afterwards. Skipped against a real cluster."""
    if kube_target.emulator is None:
        pytest.skip("needs the emulated API server (restarts, denials, request counts)")
    yield kube_target.emulator
    kube_target.emulator.allow_all()
    kube_target.emulator.down_until = 0.0
