"""The Helm chart (deploy/helm/codeact-web): lint, render, validate every manifest
against the Kubernetes schemas, and check the security properties the chart
promises (README beside the chart).

helm comes from scripts/install-k8s-tools (run by bootstrap); without it these tests
skip, except under CI, where a missing helm is a failure.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "codeact-web"
PRODUCTION = CHART / "values-production.yaml"
KUBERNETES_VERSION = "1.30.0"
RELEASE, NAMESPACE = "codeact", "codeact"
FULLNAME = "codeact-web"  # the release name does not contain the chart's: <release>-<chart>
PREFIX = f"{RELEASE}-{FULLNAME}"
SANDBOXES = f"{PREFIX}-sandboxes"

APP_COMPONENTS = {"web", "worker", "beat", "migrate", "egress-proxy", "model"}
SECRET_VARS = {
    "SECRET_KEY",
    "DATABASE_PASSWORD",
    "REDIS_PASSWORD",
    "CODEACT_MODEL_API_KEY",
    "CODEACT_ADMIN_PASSWORD",
    "CODEACT_METRICS_TOKEN",
}
PROXY_COMPONENT = "egress-proxy"

Manifest = dict[str, Any]


def helm_binary() -> str:
    found = shutil.which("helm", path=str(ROOT / ".venv" / "bin")) or shutil.which("helm")
    if found is None:
        # A failure, not a skip: bootstrap installs helm, and .ci/run sets no CI
        # variable, so a skip would hide a broken install in CI.
        pytest.fail("no helm binary: run scripts/install-k8s-tools (bootstrap does)")
    return found


def helm(*args: str) -> str:
    result = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@functools.cache
def _render(*args: str) -> tuple[Manifest, ...]:
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(*args: str) -> list[Manifest]:
    return list(_render(*args))


VARIANTS = {
    "default": (),
    "production": ("-f", str(PRODUCTION)),
    "web-access": ("--set", "webAccess.enabled=true"),
    "no-web-access": ("-f", str(PRODUCTION), "--set", "webAccess.enabled=false"),
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(*VARIANTS[request.param])


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def component(doc: Manifest) -> str:
    return str(doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(docs: list[Manifest], deployment: str) -> dict[str, Any]:
    spec = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    return {var["name"]: var for var in spec["containers"][0]["env"]}


# -- helm lint, schemas ---------------------------------------------------------------


@pytest.mark.parametrize("values", [(), ("-f", str(PRODUCTION))], ids=["default", "production"])
def test_lint_is_clean(values: tuple[str, ...]) -> None:
    out = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in out


def test_every_manifest_validates_against_the_kubernetes_schema(
    manifests: list[Manifest],
) -> None:
    assert manifests
    for doc in manifests:
        # strict: an unknown field (a typo, a misplaced key) is an error too
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_all_objects_render(manifests: list[Manifest]) -> None:
    kinds = {doc["kind"] for doc in manifests}
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "Job",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
    } <= kinds
    for name in ("web", "worker", "beat"):
        one(manifests, "Deployment", f"{PREFIX}-{name}")


# -- the worker's permissions -----------------------------------------------------------


def test_worker_role_is_least_privilege_in_the_sandbox_namespace(
    manifests: list[Manifest],
) -> None:
    assert not of_kind(manifests, "ClusterRole")
    assert not of_kind(manifests, "ClusterRoleBinding")
    (role,) = of_kind(manifests, "Role")
    assert role["metadata"]["namespace"] == SANDBOXES
    rules = sorted(
        (tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(sorted(rule["verbs"])))
        for rule in role["rules"]
    )
    assert rules == [
        (("",), ("pods",), ("create", "delete", "get", "list", "watch")),
        (("",), ("pods/attach",), ("create", "get")),
    ]
    assert not any("resourceNames" in rule or "nonResourceURLs" in rule for rule in role["rules"])

    (binding,) = of_kind(manifests, "RoleBinding")
    assert binding["metadata"]["namespace"] == SANDBOXES
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    worker = one(manifests, "Deployment", f"{PREFIX}-worker")["spec"]["template"]["spec"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": worker["serviceAccountName"], "namespace": NAMESPACE}
    ]


def test_only_the_worker_gets_an_api_token(manifests: list[Manifest]) -> None:
    for where, spec in pod_specs(manifests):
        if where == f"Deployment/{PREFIX}-worker":
            assert spec["automountServiceAccountToken"] is True
        else:
            assert spec["automountServiceAccountToken"] is False, where


def test_worker_configures_the_kubernetes_backend() -> None:
    docs = render("-f", str(PRODUCTION))
    env = env_of(docs, f"{PREFIX}-worker")
    values = {name: var.get("value") for name, var in env.items()}
    assert values["CODEACT_SANDBOX_BACKEND"] == "kubernetes"
    assert values["CODEACT_K8S_NAMESPACE"] == SANDBOXES
    assert values["CODEACT_K8S_RUNTIME_CLASS"] == "gvisor"
    assert values["CODEACT_KUBECONFIG"] == ""
    assert values["CODEACT_SANDBOX_IMAGE"] == "registry.example.org/codeact/codeact-sandbox:0.1.0"
    assert values["CODEACT_K8S_EGRESS_PROXY"] == (f"http://{PREFIX}-egress.{NAMESPACE}.svc:3128")
    assert values["CODEACT_CHANNEL_PREFIX"] == PREFIX
    (runtime,) = of_kind(docs, "RuntimeClass")
    assert runtime["metadata"]["name"] == "gvisor" and runtime["handler"] == "runsc"

    dev = {n: v.get("value") for n, v in env_of(render(), f"{PREFIX}-worker").items()}
    assert dev["CODEACT_K8S_RUNTIME_CLASS"] == ""
    assert dev["CODEACT_K8S_EGRESS_PROXY"] == ""
    assert not of_kind(render(), "RuntimeClass")


def test_model_api_key_reaches_the_worker_alone() -> None:
    docs = render("-f", str(PRODUCTION))
    for where, spec in pod_specs(docs):
        files = [
            item["path"]
            for volume in spec.get("volumes", [])
            for source in volume.get("projected", {}).get("sources", [])
            for item in source.get("secret", {}).get("items", [])
        ]
        assert ("model-api-key" in files) == (where == f"Deployment/{PREFIX}-worker"), where


# -- the sandbox namespace ------------------------------------------------------------------


def test_sandbox_namespace_enforces_restricted_pod_security(manifests: list[Manifest]) -> None:
    namespace = one(manifests, "Namespace", SANDBOXES)
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    for kind in ("ResourceQuota", "LimitRange"):
        (obj,) = of_kind(manifests, kind)
        assert obj["metadata"]["namespace"] == SANDBOXES


def test_sandboxes_are_denied_all_traffic_by_default(manifests: list[Manifest]) -> None:
    deny = one(manifests, "NetworkPolicy", "default-deny")
    assert deny["metadata"]["namespace"] == SANDBOXES
    assert deny["spec"]["podSelector"] == {}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    sandbox_policies = [
        doc
        for doc in of_kind(manifests, "NetworkPolicy")
        if doc["metadata"]["namespace"] == SANDBOXES
    ]
    # No policy in the sandbox namespace ever lets anything in.
    for policy in sandbox_policies:
        assert "ingress" not in policy["spec"], policy["metadata"]["name"]


def _proxy_selector(docs: list[Manifest]) -> dict[str, str]:
    proxy = one(docs, "Deployment", f"{PREFIX}-egress")
    return dict(proxy["spec"]["selector"]["matchLabels"])


@pytest.mark.parametrize(
    "extra",
    [(), ("--set", "webAccess.proxy.clusterIP=10.96.200.10")],
    ids=["proxy-by-name", "proxy-by-cluster-ip"],
)
def test_web_access_egress_goes_to_the_proxy_only(extra: tuple[str, ...]) -> None:
    docs = render("--set", "webAccess.enabled=true", *extra)
    policies = [
        doc
        for doc in of_kind(docs, "NetworkPolicy")
        if doc["metadata"]["namespace"] == SANDBOXES and doc["metadata"]["name"] != "default-deny"
    ]
    (policy,) = policies
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == {
        "codeact.managed": "1",
        "codeact.deployment": PREFIX,
        "codeact.web": "1",
    }
    assert spec["policyTypes"] == ["Egress"]
    to_proxy, *rest = spec["egress"]
    assert to_proxy["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "podSelector": {"matchLabels": _proxy_selector(docs)},
        }
    ]
    assert to_proxy["ports"] == [{"protocol": "TCP", "port": 3128}]
    for rule in spec["egress"]:
        for peer in rule["to"]:
            assert "ipBlock" not in peer  # never an address range: only Pods by label
    worker_env = env_of(docs, f"{PREFIX}-worker")
    proxy_url = worker_env["CODEACT_K8S_EGRESS_PROXY"]["value"]
    if extra:
        # A fixed address: the sandboxes need no DNS at all.
        assert rest == []
        assert proxy_url == "http://10.96.200.10:3128"
        service = one(docs, "Service", f"{PREFIX}-egress")
        assert service["spec"]["clusterIP"] == "10.96.200.10"
    else:
        # By name: DNS, to the cluster's DNS Pods alone, on port 53 alone.
        (dns,) = rest
        assert dns["to"] == [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
        assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
        assert proxy_url == f"http://{PREFIX}-egress.{NAMESPACE}.svc:3128"

    # The proxy itself takes connections from this deployment's web-enabled sandboxes only.
    proxy_policy = one(docs, "NetworkPolicy", f"{PREFIX}-egress")
    assert proxy_policy["metadata"]["namespace"] == NAMESPACE
    (ingress,) = proxy_policy["spec"]["ingress"]
    (peer,) = ingress["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": SANDBOXES}
    assert peer["podSelector"]["matchLabels"]["codeact.web"] == "1"
    # and reaches no private address (the cluster, the nodes, cloud metadata)
    blocks = [
        p["ipBlock"] for r in proxy_policy["spec"]["egress"] for p in r["to"] if "ipBlock" in p
    ]
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])


def test_without_web_access_no_proxy_objects_render() -> None:
    for args in (("--set", "webAccess.enabled=false"), VARIANTS["no-web-access"]):
        docs = render(*args)
        assert not [doc for doc in docs if component(doc) == PROXY_COMPONENT]
        assert not [doc for doc in docs if "egress" in doc["metadata"]["name"]]
        names = [doc["metadata"]["name"] for doc in of_kind(docs, "NetworkPolicy")]
        assert names == ["default-deny"]
        env = env_of(docs, f"{PREFIX}-worker")
        assert env["CODEACT_K8S_EGRESS_PROXY"]["value"] == ""
        assert env["CODEACT_EGRESS"]["value"] == "off"


def test_squid_refuses_private_addresses_and_unsafe_ports() -> None:
    docs = render("--set", "webAccess.enabled=true", "--set", "webAccess.allow={pypi.org}")
    conf = one(docs, "ConfigMap", f"{PREFIX}-egress")["data"]["squid.conf"]
    lines = [line.strip() for line in conf.splitlines()]
    access = [line for line in lines if line.startswith("http_access")]
    assert access == [
        "http_access deny !Safe_ports",
        "http_access deny CONNECT !SSL_ports",
        "http_access deny manager",
        "http_access deny to_internal",
        "http_access allow allowed_sites",
        "http_access deny all",
    ]
    (internal,) = [line for line in lines if line.startswith("acl to_internal dst ")]
    assert {"10.0.0.0/8", "169.254.0.0/16", "fc00::/7"} <= set(internal.split()[3:])


# -- the app's processes ------------------------------------------------------------------------


def test_beat_is_a_single_recreated_replica(manifests: list[Manifest]) -> None:
    beat = one(manifests, "Deployment", f"{PREFIX}-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_migrations_run_as_a_hook_before_install_and_upgrade(manifests: list[Manifest]) -> None:
    (job,) = of_kind(manifests, "Job")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    # The chart's Secret, when there is one, exists before the Job (a hook of lower weight).
    for secret in of_kind(manifests, "Secret"):
        hook = secret["metadata"]["annotations"]
        assert set(hook["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert int(hook["helm.sh/hook-weight"]) < int(annotations.get("helm.sh/hook-weight", 0))


def test_web_is_probed_on_the_apps_health_endpoints(manifests: list[Manifest]) -> None:
    web = one(manifests, "Deployment", f"{PREFIX}-web")["spec"]["template"]["spec"]
    (container,) = web["containers"]
    assert container["command"][0] == "daphne"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    # The probe's Host header must be one Django allows.
    host = container["livenessProbe"]["httpGet"]["httpHeaders"][0]["value"]
    env = {var["name"]: var.get("value") for var in container["env"]}
    assert host in env["ALLOWED_HOSTS"].split(",")
    assert container["readinessProbe"]["exec"]["command"][-2:] == ["--role", "web"]


def test_ingress_suits_websockets_and_uploads(manifests: list[Manifest]) -> None:
    (ingress,) = of_kind(manifests, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    env = env_of(manifests, f"{PREFIX}-web")
    upload_mb = env["CODEACT_MAX_UPLOAD_BODY_MB"]["value"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{upload_mb}m"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert set(hosts) <= set(env["ALLOWED_HOSTS"]["value"].split(","))


def test_production_has_tls_replicas_and_a_disruption_budget() -> None:
    docs = render("-f", str(PRODUCTION))
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["tls"]
    assert one(docs, "Deployment", f"{PREFIX}-web")["spec"]["replicas"] >= 2
    assert one(docs, "Deployment", f"{PREFIX}-worker")["spec"]["replicas"] >= 2
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] >= 1
    env = env_of(docs, f"{PREFIX}-web")
    assert "SECURE_SSL_REDIRECT" not in env  # the production profile's default: on
    assert not [doc for doc in docs if doc["metadata"]["name"].endswith("-model")]


# -- security of every container ----------------------------------------------------------------


def test_no_container_runs_as_root_or_privileged(manifests: list[Manifest]) -> None:
    for where, spec in pod_specs(manifests):
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser", 0) != 0, where
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, where
        for container in containers(spec):
            ctx = container["securityContext"]
            name = f"{where}/{container['name']}"
            assert ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, name
            assert ctx.get("runAsUser", pod.get("runAsUser")) != 0, name
            assert ctx.get("privileged") is not True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["capabilities"] == {"drop": ["ALL"]}, name
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"], name


def test_secrets_never_appear_as_plain_environment_values(manifests: list[Manifest]) -> None:
    for where, spec in pod_specs(manifests):
        for container in containers(spec):
            for var in container.get("env", []):
                if var["name"] in SECRET_VARS:
                    # only by reference (a Secret key), never the value itself
                    assert "value" not in var, f"{where}: {var['name']}"
                    assert "secretKeyRef" in var.get("valueFrom", {}), f"{where}: {var['name']}"
                if var["name"].endswith("_FILE"):
                    assert var["value"].startswith("/etc/codeact/secrets/"), var
                if var["name"] in ("DATABASE_URL", "REDIS_URL"):
                    assert urlsplit(var["value"]).password is None, f"a password in {var['name']}"
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, where
        # The files come from Secrets mounted read-only.
        for container in containers(spec):
            for mount in container.get("volumeMounts", []):
                if mount["name"] == "secrets":
                    assert mount["readOnly"] is True


def test_given_secrets_are_only_in_the_secret_object() -> None:
    docs = render(
        "--set",
        "djangoSecretKey.value=dj-s3cret-value",
        "--set",
        "database.password=pg-s3cret-value",
        "--set",
        "redis.password=redis-s3cret-value",
        "--set",
        "model.apiKey=sk-s3cret-value",
    )
    for doc in docs:
        text = yaml.safe_dump(doc)
        if doc["kind"] == "Secret":
            continue
        assert "s3cret" not in text, f"{doc['kind']}/{doc['metadata']['name']}"
    (secret,) = of_kind(docs, "Secret")
    assert set(secret["data"]) == {
        "secret-key",
        "database-password",
        "redis-password",
        "model-api-key",
    }
    env = env_of(docs, f"{PREFIX}-worker")
    assert env["DATABASE_PASSWORD_FILE"]["value"] == "/etc/codeact/secrets/database-password"
    assert env["CODEACT_MODEL_API_KEY_FILE"]["value"] == "/etc/codeact/secrets/model-api-key"


# -- the sandbox Pod the worker creates (sandbox/kubernetes_backend.py) ----------------


def _quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


@pytest.mark.parametrize("variant", ["default", "production"])
def test_the_sandbox_pod_the_worker_creates_is_valid_restricted_and_within_the_limit_range(
    variant: str,
) -> None:
    """The worker builds sandbox Pods itself (no template renders them): built with
    the chart's settings for the worker, one must validate against the schemas,
    meet Pod Security `restricted`, and fit the sandbox namespace's LimitRange."""
    from sandbox.api import Limits
    from sandbox.kubernetes_backend import pod_manifest

    docs = render(*VARIANTS[variant])
    env = {name: var.get("value", "") for name, var in env_of(docs, f"{PREFIX}-worker").items()}
    limits = Limits(
        memory_bytes=int(env["CODEACT_SANDBOX_MEMORY_MB"]) << 20,
        cpus=float(env["CODEACT_SANDBOX_CPUS"]),
    )
    pod = pod_manifest(
        "codeact-sandbox-0123",
        env["CODEACT_SANDBOX_IMAGE"],
        limits,
        {"codeact.deployment": "codeact"},
        "k" * 64,
        runtime_class=env["CODEACT_K8S_RUNTIME_CLASS"],
    )
    pod.setdefault("metadata", {})["namespace"] = env["CODEACT_K8S_NAMESPACE"]
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)

    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec.get("hostNetwork", False) is False and spec.get("hostPID", False) is False
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert not context["capabilities"].get("add")
        assert context.get("privileged", False) is False
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"emptyDir"}, volume  # no hostPath, no secrets
    assert env["CODEACT_K8S_NAMESPACE"] == SANDBOXES

    limit_range = of_kind(docs, "LimitRange")[0]["spec"]["limits"][0]
    for container in spec["containers"]:
        for resource, most in limit_range["max"].items():
            asked = container["resources"]["limits"][resource]
            assert _quantity(str(asked)) <= _quantity(str(most)), (resource, asked, most)
