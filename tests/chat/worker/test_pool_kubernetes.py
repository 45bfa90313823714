"""The sandbox lifecycle on the Kubernetes backend: warm pods claimed through the
database row, re-attached by the stored pod name, orphans and idle pods removed
by label. Against the EMULATED API server of tests/support/kube_api.py (pods are
real containers of the sandbox image on the local engine), or a real cluster
with CODEACT_TEST_K8S=real (make test-k8s)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import SandboxRecord
from chat.worker import hosts, pool
from tests.factories import ConversationFactory
from tests.support.kube_api import kube_target  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def on_kubernetes(kube_target, settings):  # noqa: F811
    settings.CODEACT_SANDBOX_BACKEND = "kubernetes"
    settings.CODEACT_KUBECONFIG = kube_target.kubeconfig
    settings.CODEACT_K8S_NAMESPACE = kube_target.namespace
    settings.CODEACT_K8S_RUNTIME_CLASS = kube_target.runtime_class
    settings.CODEACT_POOL_SIZE = 1
    yield kube_target
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")
    pool.reconcile(grace=0)


def pods(namespace_host: str) -> set[str]:
    return {p.id for p in hosts.backend(namespace_host).list(pool.deployment_labels())}


def test_warm_pods_are_claimed_through_their_row_and_reattached_by_name(on_kubernetes, owner):
    host = f"kubernetes:{on_kubernetes.namespace}"
    assert hosts.addresses() == [host]
    assert pool.top_up_pool() == 1
    warm = SandboxRecord.objects.get(state="warm")
    assert warm.host == host and warm.container_id in pods(host)

    conversation = ConversationFactory(owner=owner)
    claim = pool.claim_for(conversation)
    assert claim.fresh and claim.record.pk == warm.pk
    # numpy, pandas and matplotlib were imported while the pod was in the pool
    result = claim.sandbox.execute("print(type(pd).__name__)\nkept = 7")
    assert result.status == "ok" and result.outputs[0]["text"] == "module\n", result
    claim.sandbox.detach()

    # Any worker re-attaches by the pod name on the record; the kernel kept its state.
    again = pool.claim_for(conversation)
    assert not again.fresh and again.record.pk == warm.pk
    assert again.sandbox.execute("print(kept)").outputs[0]["text"] == "7\n"
    again.sandbox.detach()


def test_orphan_and_idle_pods_are_removed_by_label(on_kubernetes, owner):
    host = f"kubernetes:{on_kubernetes.namespace}"
    claim = pool.claim_for(ConversationFactory(owner=owner))
    claim.sandbox.detach()
    orphan = pool._new_container(host)  # labelled as ours, unknown to the registry
    orphan.detach()
    assert orphan.id in pods(host)

    report = pool.reconcile(grace=0)
    assert report["orphans"] == 1
    assert orphan.id not in pods(host)
    assert claim.record.container_id in pods(host)

    SandboxRecord.objects.filter(pk=claim.record.pk).update(
        last_used_at=timezone.now() - timedelta(days=1)
    )
    assert pool.reap_idle() == 1
    assert claim.record.container_id not in pods(host)
    assert SandboxRecord.objects.get(pk=claim.record.pk).removed_reason == "idle"
