"""Sandboxes as Kubernetes Pods, driven through the API server's attach websocket.

One Pod per sandbox in the sandbox namespace (`pod_manifest`): no service
account token, no service links, no environment (with web access: the proxy
variables only), a non-root uid with every capability dropped, no privilege
gain, a read-only root, the RuntimeDefault seccomp profile, CPU/memory/
ephemeral-storage requests and limits, and size-capped memory emptyDirs for
/tmp and /workspace. `runtimeClassName` picks the runtime (a class mapped to
gVisor's runsc where the cluster has one). What a pod spec cannot say (open
files, file size, core dumps, processes, inodes per tmpfs) the bridge applies
itself (`--rlimits`, `--inodes`: sandbox/image/bridge.py). Note that
RLIMIT_NPROC counts the processes of the uid on the node under runc (per
sandbox under gVisor): give the kubelet a podPidsLimit too.

The host reaches the bridge only through the API server's `attach` subresource
(`/api/v1/namespaces/{ns}/pods/{name}/attach?stdin=true&stdout=true&stderr=true`),
a websocket speaking `v5.channel.k8s.io` (or v4 when the server picks it): one
channel byte, then data (0 stdin, 1 stdout, 2 stderr, 3 the server's status,
255 a v5 channel close). There is no Service, no port, no exec, no
port-forward and nothing listening in the pod. The websocket is made here with
`websocket-client` from the official client's `Configuration` (the same TLS,
CA, client certificate, bearer token and proxy rules as
`kubernetes.stream.ws_client.create_websocket`), because the client's own
`stream()` wrapper owns its socket in a polling loop and decodes channels to
text: the bridge protocol needs a raw duplex stream, one reader thread and
locked sends (`enable_multithread`). The bridge's signing key travels as the
first stdin line, and is kept in the pod's `codeact.bridge-key` annotation
for a process that attaches later; the sandbox cannot read it (no token, no
downward API).

A lost attach stream (an API server restart, the kubelet's stream idle
timeout) is opened again by the connection (sandbox/connection.py): the bridge
and its kernel go on, and the requests still waiting are sent again (one
written into the dying stream may never have arrived); the bridge remembers
recent request ids, ignores a repeat of a running one and answers a finished
one with its done again, so nothing runs twice.

Caveat: the container runtime keeps a pod's stdout in the node's container log
(rotated at the kubelet's containerLogMaxSize). Protocol lines, file chunks
included, pass through it; they are signed, not encrypted.
Nothing here imports Django.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import secrets
import ssl
import time
from typing import Any
from urllib.parse import urlencode, urlparse

import websocket
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from sandbox.api import Limits, SandboxError
from sandbox.backend import Placed
from sandbox.bridged import BridgedSandbox
from sandbox.connection import ChannelFraming, Connection
from sandbox.profile import SANDBOX_UID, WebAccess

log = logging.getLogger(__name__)

LABEL = "codeact.managed"
WEB_LABEL = "codeact.web"
KEY_ANNOTATION = "codeact.bridge-key"
CONTAINER = "sandbox"
NAME_PREFIX = "codeact-sbx-"
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
REQUEST_TIMEOUT = 30.0  # one API call
CONNECT_TIMEOUT = 15.0  # opening the attach websocket
SEND_TIMEOUT = 10.0
# Waiting reasons after which a pod will not run without someone's help.
FAILED_WAITING = {
    "ErrImagePull": False,
    "ImagePullBackOff": False,
    "ErrImageNeverPull": True,
    "InvalidImageName": True,
    "CreateContainerConfigError": True,
    "CreateContainerError": False,
    "RunContainerError": False,
    "CrashLoopBackOff": False,
}


def load_api_client(kubeconfig: str = "") -> k8s.ApiClient:
    """An API client: the pod's service account when running in a cluster and no
    kubeconfig is given, else that kubeconfig file (empty: $KUBECONFIG or ~/.kube/config)."""
    configuration = k8s.Configuration()
    try:
        if not kubeconfig and _in_cluster():
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig or None, client_configuration=configuration
            )
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the default kubeconfig"
        raise SandboxError(f"No Kubernetes configuration ({where}): {exc}", permanent=True) from exc
    return k8s.ApiClient(configuration)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def rlimits(limits: Limits) -> str:
    """The bridge's --rlimits argument: what Docker sets as ulimits and its pids cap."""
    return f"nofile={limits.nofile},fsize={limits.fsize_bytes},core=0,nproc={limits.pids}"


def proxy_environment(proxy: str) -> dict[str, str]:
    """The variables that send a sandbox's HTTP(S) through the egress proxy."""
    return {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "NO_PROXY": "",
        "no_proxy": "",
    }


def pod_manifest(
    name: str,
    image: str,
    limits: Limits,
    labels: dict[str, str],
    key: str,
    runtime_class: str = "",
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Pod of one sandbox (a pure function: tests assert on it).

    environment: the proxy variables of a sandbox with web access (None: none,
    and no web label, so the namespace's default-deny NetworkPolicy holds).
    """
    web = environment is not None
    cpu = f"{max(1, math.ceil(limits.cpus * 1000))}m"
    # tmpfs pages count as the container's memory, as with Docker.
    resources = {
        "cpu": cpu,
        "memory": str(limits.memory_bytes),
        # The root is read-only and the emptyDirs are memory: what is left on the
        # node's disk is the container log (the kubelet counts it here). Capped
        # like the largest file a process may write.
        "ephemeral-storage": str(limits.fsize_bytes),
    }
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--preload",
            ",".join(limits.preload),
            "--rlimits",
            rlimits(limits),
            "--inodes",
            str(limits.inodes),
        ],
        "stdin": True,
        "stdinOnce": False,
        "tty": False,
        "resources": {"limits": dict(resources), "requests": dict(resources)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "workspace", "mountPath": "/workspace"},
        ],
        "terminationMessagePolicy": "File",
    }
    if environment is not None:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(environment.items())]
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "fsGroup": SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(limits.tmp_bytes)}},
            {
                "name": "workspace",
                "emptyDir": {"medium": "Memory", "sizeLimit": str(limits.workspace_bytes)},
            },
        ],
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    pod_labels = {**labels, LABEL: "1"}
    if web:
        pod_labels[WEB_LABEL] = "1"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": pod_labels,
            "annotations": {KEY_ANNOTATION: key},
        },
        "spec": spec,
    }


# --- the attach websocket --------------------------------------------------------


class AttachStream:
    """The attach websocket as the stream a Connection reads: each recv returns one
    whole message (channel byte first, for ChannelFraming), each sendall writes one
    message on the stdin channel."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws: Any = ws  # websocket-client has partial annotations
        self.subprotocol = str(ws.subprotocol or "")

    def recv(self, size: int = 0, /) -> bytes:
        while True:
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException as exc:
                raise TimeoutError(str(exc)) from exc
            except websocket.WebSocketConnectionClosedException:
                return b""
            except websocket.WebSocketException as exc:
                raise OSError(str(exc)) from exc
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return b""
            if data:
                return data if isinstance(data, bytes) else data.encode()

    def sendall(self, data: bytes, /) -> None:
        try:
            self.ws.send(b"\x00" + data, opcode=websocket.ABNF.OPCODE_BINARY)
        except websocket.WebSocketTimeoutException as exc:
            raise TimeoutError(str(exc)) from exc
        except websocket.WebSocketException as exc:
            raise OSError(str(exc)) from exc

    def settimeout(self, timeout: float | None, /) -> None:
        self.ws.settimeout(timeout)

    def shutdown(self, how: int, /) -> None:
        sock = self.ws.sock
        if sock is not None:
            sock.shutdown(how)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.shutdown()


def open_attach(configuration: k8s.Configuration, namespace: str, pod: str) -> AttachStream:
    """Open the attach websocket of a pod's sandbox container (stdin, stdout, stderr)."""
    query = urlencode(
        {
            "container": CONTAINER,
            "stdin": "true",
            "stdout": "true",
            "stderr": "true",
            "tty": "false",
        }
    )
    base = configuration.host.rstrip("/")
    url = f"{base}/api/v1/namespaces/{namespace}/pods/{pod}/attach?{query}"
    url = "ws" + url[4:] if url.startswith("http") else url  # http→ws, https→wss
    header = []
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            header.append(f"{setting['key']}: {setting['value']}")
    if configuration.username or configuration.password:
        header.append(f"authorization: {configuration.get_basic_auth_token()}")
    if url.startswith("wss://") and configuration.verify_ssl:
        sslopt: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED}
        if configuration.ssl_ca_cert:
            sslopt["ca_certs"] = configuration.ssl_ca_cert
        if configuration.assert_hostname is not None:
            sslopt["check_hostname"] = configuration.assert_hostname
    else:
        sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    if configuration.cert_file:
        sslopt["certfile"] = configuration.cert_file
    if configuration.key_file:
        sslopt["keyfile"] = configuration.key_file
    if configuration.tls_server_name:
        sslopt["server_hostname"] = configuration.tls_server_name
    options: dict[str, Any] = {}
    if configuration.proxy:
        proxy = urlparse(configuration.proxy)
        options.update(http_proxy_host=proxy.hostname, http_proxy_port=proxy.port)
        options["proxy_type"] = "http"
    if configuration.no_proxy:
        options["http_no_proxy"] = configuration.no_proxy.split(",")
    ws: Any = websocket.WebSocket(sslopt=sslopt, enable_multithread=True, skip_utf8_validation=True)
    try:
        ws.connect(url, header=header, subprotocols=[V5, V4], timeout=CONNECT_TIMEOUT, **options)
    except websocket.WebSocketBadStatusException as exc:
        ws.shutdown()
        raise _attach_error(exc, namespace, pod) from exc
    except (websocket.WebSocketException, OSError) as exc:
        ws.shutdown()
        raise SandboxError(
            f"Could not attach to pod {namespace}/{pod}: {exc}", permanent=False
        ) from exc
    stream = AttachStream(ws)
    if stream.subprotocol not in (V5, V4):
        stream.close()
        raise SandboxError(
            f"The API server attached pod {pod} with protocol {stream.subprotocol!r}, "
            f"not {V5} or {V4}.",
            permanent=True,
        )
    stream.settimeout(SEND_TIMEOUT)
    return stream


def _attach_error(
    exc: websocket.WebSocketBadStatusException, namespace: str, pod: str
) -> SandboxError:
    status = int(exc.status_code)
    detail = _status_message(exc.resp_body) or str(exc)
    if status == 403:
        return SandboxError(
            f"The worker's service account may not attach to pods in namespace {namespace} "
            f"(pods/attach, verb create and get): {detail}",
            permanent=True,
        )
    if status == 404:
        return SandboxError(f"Pod {namespace}/{pod} is gone: {detail}", permanent=False)
    return SandboxError(
        f"Could not attach to pod {namespace}/{pod} ({status}): {detail}",
        permanent=status in (400, 401, 422),
    )


def _status_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:300]
    return str(parsed.get("message", "") if isinstance(parsed, dict) else "")[:300] or body[:300]


def api_error(
    exc: BaseException, doing: str, namespace: str, resource: str = "pods"
) -> SandboxError:
    """An API error as a SandboxError a turn can report (permanent when retrying cannot help)."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        detail = _status_message(exc.body) or str(exc.reason or "")
        if status == 403:
            return SandboxError(
                f"The worker's service account may not {doing} {resource} in namespace "
                f"{namespace}: {detail}",
                permanent=True,
            )
        if status == 401:
            return SandboxError(
                f"The Kubernetes API server refused the worker's credentials: {detail}",
                permanent=True,
            )
        if status in (400, 409, 422):
            return SandboxError(
                f"The Kubernetes API server refused to {doing} {resource} ({status}): {detail}",
                permanent=True,
            )
        return SandboxError(
            f"Could not {doing} {resource} in {namespace} ({status}): {detail}", permanent=False
        )
    return SandboxError(
        f"The Kubernetes API server did not answer ({doing} {resource}): {exc}", permanent=False
    )


# --- the sandbox -----------------------------------------------------------------


class KubernetesSandbox(BridgedSandbox):
    """A sandbox pod and its bridge connection (through the API server's attach)."""

    def __init__(
        self,
        backend: KubernetesBackend,
        image: str,
        limits: Limits,
        labels: dict[str, str],
        web: WebAccess | None = None,
        pod_name: str | None = None,
    ) -> None:
        """Start a new sandbox pod, or attach to a running one (pod_name)."""
        self.backend = backend
        self.image = image
        self.limits = limits
        self.labels = {LABEL: "1", **labels}
        self.web = web
        self.runtime: str | None = backend.runtime_class
        self.id = ""
        self.address = ""
        self._conn: Connection | None = None
        self._interrupt_at: float | None = None
        self.started_at = 0.0
        if pod_name:
            self._connect(pod_name)
        else:
            self._start()

    @property
    def namespace(self) -> str:
        return self.backend.namespace

    @property
    def name(self) -> str:
        return self.id  # a pod name: its first 12 characters are the same for every pod

    # --- lifecycle -------------------------------------------------------------

    def _environment(self) -> dict[str, str] | None:
        if self.web is None:
            return None
        if self.backend.egress_proxy:
            return proxy_environment(self.backend.egress_proxy)
        if self.web.environment:
            return dict(self.web.environment)
        raise SandboxError(
            "Web access on Kubernetes needs the egress proxy's address "
            "(KubernetesBackend(egress_proxy=...)).",
            permanent=True,
        )

    def _start(self) -> None:
        self._interrupt_at = None
        started = time.monotonic()
        key = secrets.token_hex(32)
        name = NAME_PREFIX + secrets.token_hex(6)
        manifest = pod_manifest(
            name,
            self.image,
            self.limits,
            self.labels,
            key,
            self.backend.runtime_class,
            self._environment(),
        )
        try:
            self.backend.core.create_namespaced_pod(
                self.namespace, manifest, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as exc:
            raise api_error(exc, "create", self.namespace) from exc
        self.id = name
        try:
            pod = self.backend.wait_running(name, started + self.limits.start_timeout)
            conn = self._attach(key)
            conn.send_line({"key": key})
        except (SandboxError, ConnectionError) as exc:
            self.close()
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"Could not start a sandbox: {exc}", permanent=False) from exc
        if not conn.ready.wait(self.limits.start_timeout) or conn.closed.is_set():
            detail = "; ".join(conn.stderr)[-500:]
            self.close()
            raise SandboxError(
                f"The sandbox did not start: {detail or 'timed out'}", permanent=False
            )
        if self.web is not None:
            self.address = str((pod.get("status") or {}).get("podIP") or "")
        self.started_at = time.monotonic() - started

    def _attach(self, key: str) -> Connection:
        stream = open_attach(self.backend.configuration, self.namespace, self.id)
        self.protocol = stream.subprotocol
        self._conn = Connection(
            stream,
            self.limits.line_bytes,
            self.id,
            key,
            framing=ChannelFraming,
            reattach=self._reattach,
        )
        return self._conn

    def _reattach(self) -> AttachStream | None:
        """A new attach stream to the same pod; None once the pod is gone or ended.
        Other errors (the API server is still coming back) are raised: the
        connection tries again within its window."""
        pod = self.backend.read_pod(self.id)
        if pod is None or _phase(pod) != "Running" or _deleting(pod):
            return None
        try:
            return open_attach(self.backend.configuration, self.namespace, self.id)
        except SandboxError as exc:
            if exc.permanent:
                return None
            raise

    def _connect(self, pod_name: str) -> None:
        """Attach to a running sandbox pod (one made warm by another process)."""
        self.id = pod_name
        pod = self.backend.read_pod(pod_name)
        if pod is None:
            raise SandboxError(f"Sandbox {pod_name} is gone.", permanent=False)
        if _phase(pod) != "Running" or _deleting(pod):
            raise SandboxError(
                f"Sandbox {pod_name} is not running ({_phase(pod)}).", permanent=False
            )
        key = str(((pod.get("metadata") or {}).get("annotations") or {}).get(KEY_ANNOTATION, ""))
        if (pod.get("metadata") or {}).get("labels", {}).get(WEB_LABEL) == "1":
            self.address = str((pod.get("status") or {}).get("podIP") or "")
        self._take_over(self._attach(key), pod_name)

    def close(self) -> None:
        """Remove the pod."""
        self.detach()
        if self.id:
            try:
                self.backend.remove(self.id)
            except SandboxError:
                log.warning("could not remove sandbox %s", self.id, exc_info=True)

    def _remove(self, pod_name: str, attempts: int = 5) -> None:
        for attempt in range(attempts):
            try:
                self.backend.remove(pod_name)
                return
            except SandboxError as exc:
                last = exc
            time.sleep(2**attempt)
        log.warning("could not remove sandbox %s: %s", pod_name, last)


# --- the backend ----------------------------------------------------------------


class KubernetesBackend:
    """Sandboxes as pods in one namespace (sandbox.backend.Backend)."""

    kind = "kubernetes"

    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        runtime_class: str = "",
        egress_proxy: str = "",
    ) -> None:
        self.api_client = api_client
        self.configuration: k8s.Configuration = api_client.configuration
        self.core = k8s.CoreV1Api(api_client)
        self.namespace = namespace
        self.runtime_class = runtime_class
        self.egress_proxy = egress_proxy
        self.host = f"{namespace}@{self.configuration.host}"

    def start(
        self,
        image: str,
        limits: Limits,
        labels: dict[str, str],
        web: WebAccess | None = None,
    ) -> KubernetesSandbox:
        return KubernetesSandbox(self, image, limits, labels, web)

    def attach(self, sandbox_id: str, image: str, limits: Limits) -> KubernetesSandbox:
        return KubernetesSandbox(self, image, limits, {}, pod_name=sandbox_id)

    def remove(self, sandbox_id: str) -> None:
        try:
            self.core.delete_namespaced_pod(
                sandbox_id,
                self.namespace,
                grace_period_seconds=0,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise api_error(exc, "delete", self.namespace) from exc
        except Exception as exc:
            raise api_error(exc, "delete", self.namespace) from exc

    def list(self, labels: dict[str, str]) -> list[Placed]:
        selector = ",".join(f"{k}={v}" for k, v in {LABEL: "1", **labels}.items())
        try:
            listed = self.core.list_namespaced_pod(
                self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as exc:
            raise api_error(exc, "list", self.namespace) from exc
        now = datetime.datetime.now(datetime.UTC)
        placed = []
        for item in self.api_client.sanitize_for_serialization(listed).get("items") or []:
            meta = item.get("metadata") or {}
            created = _timestamp(meta.get("creationTimestamp"))
            phase = _phase(item)
            deleting = _deleting(item)
            placed.append(
                Placed(
                    id=str(meta.get("name", "")),
                    running=phase == "Running" and not deleting,
                    status="Terminating" if deleting else phase,
                    age_seconds=max(0.0, (now - created).total_seconds()) if created else 0.0,
                )
            )
        return placed

    def answers(self) -> bool:
        try:
            self.core.list_namespaced_pod(self.namespace, limit=1, _request_timeout=5)
        except Exception:
            return False
        return True

    # --- helpers of the sandbox ---------------------------------------------------

    def read_pod(self, name: str) -> dict[str, Any] | None:
        """The pod as a dict (camelCase, as the API sends it); None when it is gone."""
        try:
            pod = self.core.read_namespaced_pod(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(exc, "read", self.namespace) from exc
        except Exception as exc:
            raise api_error(exc, "read", self.namespace) from exc
        return dict(self.api_client.sanitize_for_serialization(pod))

    def wait_running(self, name: str, deadline: float) -> dict[str, Any]:
        """Watch the pod until its container runs; SandboxError when it fails, is
        deleted, or is not running by the deadline (with the last reason seen)."""
        last = "Pending"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError(
                    f"The sandbox pod {name} did not start in time ({last}).", permanent=False
                )
            watcher = k8s_watch.Watch()
            try:
                for event in watcher.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, math.ceil(remaining)),
                    _request_timeout=remaining + 5,
                    deserialize=False,
                ):
                    kind, pod = event.get("type"), event.get("raw_object") or event.get("object")
                    if kind == "ERROR":
                        break  # e.g. 410 Gone: watch again
                    if not isinstance(pod, dict):
                        continue
                    if kind == "DELETED":
                        raise SandboxError(
                            f"The sandbox pod {name} was deleted while starting.", permanent=False
                        )
                    state, last, permanent = pod_state(pod)
                    if state == "running":
                        return pod
                    if state == "failed":
                        raise SandboxError(
                            f"The sandbox pod {name} failed to start: {last}", permanent=permanent
                        )
                    if time.monotonic() >= deadline:
                        break
            except SandboxError:
                raise
            except (ApiException, OSError, ValueError) as exc:
                if isinstance(exc, ApiException) and exc.status in (401, 403):
                    raise api_error(exc, "watch", self.namespace) from exc
                last = f"{last}; watching failed: {exc}"
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            except Exception as exc:  # urllib3's protocol errors when the server goes away
                last = f"{last}; watching failed: {type(exc).__name__}"
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            finally:
                watcher.stop()


def pod_state(pod: dict[str, Any]) -> tuple[str, str, bool]:
    """("running" | "pending" | "failed", the reason in words, failed for good)."""
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    containers = status.get("containerStatuses") or []
    mine = next((c for c in containers if c.get("name") == CONTAINER), None) or {}
    state = mine.get("state") or {}
    if _deleting(pod):
        return "failed", "the pod is being deleted", False
    if phase in ("Failed", "Succeeded"):
        ended = state.get("terminated") or {}
        reason = ended.get("reason") or status.get("reason") or phase
        message = ended.get("message") or status.get("message") or ""
        code = ended.get("exitCode")
        words = f"{reason}" + (f" (exit code {code})" if code is not None else "")
        return "failed", f"{words}: {message}".rstrip(": "), False
    if phase == "Running" and "running" in state:
        return "running", "Running", False
    waiting = state.get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    if reason in FAILED_WAITING:
        message = str(waiting.get("message") or "")
        return "failed", f"{reason}: {message}".rstrip(": "), FAILED_WAITING[reason]
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return "pending", f"{condition.get('reason')}: {condition.get('message', '')}", False
    return "pending", reason or phase, False


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _deleting(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _timestamp(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None
