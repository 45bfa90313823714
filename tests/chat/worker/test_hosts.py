"""Which engines sandboxes run on, as settings say: addresses, TLS client files,
and placement by free room among the hosts that answer (pure settings and rows;
the real second engine is tests/chat/worker/test_docker_hosts.py)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from chat.models import SandboxHost, SandboxRecord
from chat.worker import hosts
from sandbox.api import SandboxError

A, B = "tcp://10.0.0.12:2376", "tcp://10.0.0.13:2376"


def test_the_hosts_are_the_listed_engines_or_the_default_one_or_the_namespace(settings):
    settings.CODEACT_DOCKER_HOSTS = []
    settings.CODEACT_DOCKER_URL = "unix:///run/other.sock"
    assert hosts.addresses() == [""]  # the one engine, as records made before hosts name it
    settings.CODEACT_DOCKER_HOSTS = [A, B]
    assert hosts.addresses() == [A, B]
    settings.CODEACT_SANDBOX_BACKEND = "kubernetes"
    settings.CODEACT_K8S_NAMESPACE = "sandboxes"
    assert hosts.addresses() == ["kubernetes:sandboxes"]


def test_tls_files_come_from_the_hosts_own_folder_or_the_shared_one(settings, tmp_path):
    settings.CODEACT_DOCKER_TLS_DIR = str(tmp_path)
    assert hosts._tls_config("unix:///var/run/docker.sock") is None
    with pytest.raises(SandboxError) as missing:
        hosts._tls_config(A)
    assert missing.value.permanent and "ca.pem" in missing.value.message
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("shared")
    assert hosts._tls_config(A).cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    own = tmp_path / "10.0.0.13"
    own.mkdir()
    for name in ("ca", "cert", "key"):
        (own / f"{name}.pem").write_text("its own")
    assert hosts._tls_config(B).cert == (str(own / "cert.pem"), str(own / "key.pem"))
    assert hosts._tls_config(B).ca_cert == str(own / "ca.pem")


@pytest.mark.django_db
def test_a_new_sandbox_goes_to_the_up_host_with_the_most_room(settings):
    settings.CODEACT_DOCKER_HOSTS = [A, B]
    settings.CODEACT_SANDBOXES_PER_HOST = 3
    SandboxRecord.objects.create(container_id="a1", host=A, state="warm", image="i")
    assert hosts.room() == {A: 2, B: 3}
    assert hosts.place() == B
    assert hosts.place(web=True) == A  # web access stays beside the egress proxy
    SandboxRecord.objects.create(container_id="b1", host=B, state="warm", image="i")
    SandboxRecord.objects.create(container_id="b2", host=B, state="claimed", image="i")
    SandboxRecord.objects.create(container_id="b3", host=B, state="removed", image="i")
    assert hosts.place() == A

    hosts.mark_down(A, "connection refused")
    assert hosts.down() == {A}
    assert hosts.room() == {B: 1}
    assert hosts.place() == B and hosts.place(web=True) is None
    SandboxRecord.objects.create(container_id="b4", host=B, state="claimed", image="i")
    assert hosts.place() is None

    hosts.mark_up(A)
    assert hosts.down() == set()
    assert SandboxHost.objects.get(address=A).checked_at <= timezone.now()


class EmptyEngine:
    """A stand-in engine that answers and runs nothing (this test is about rows)."""

    def list(self, labels):
        return []


@pytest.mark.django_db
def test_records_of_a_host_no_longer_configured_stop_counting(settings, monkeypatch):
    from chat.worker import pool

    settings.CODEACT_DOCKER_HOSTS = [A]
    monkeypatch.setattr(pool, "_reconcile_host", lambda host, found, grace: (0, 0))
    monkeypatch.setattr(hosts, "backend", lambda address: EmptyEngine())
    kept = SandboxRecord.objects.create(container_id="a1", host=A, state="claimed", image="i")
    dropped = SandboxRecord.objects.create(container_id="b1", host=B, state="claimed", image="i")
    pool.reconcile(grace=0)
    assert SandboxRecord.objects.get(pk=kept.pk).state == "claimed"
    assert SandboxRecord.objects.get(pk=dropped.pk).removed_reason == "host_removed"


class AnsweringEngine(EmptyEngine):
    def answers(self):
        return True


@pytest.mark.django_db
def test_a_host_marked_down_is_asked_again_before_claims_give_up(settings, monkeypatch):
    """The only engine restarted: marked down while it was away, it takes sandboxes
    again as soon as it answers, not a beat interval later."""
    settings.CODEACT_DOCKER_HOSTS = [A]
    hosts.mark_down(A, "connection refused")
    assert hosts.place() is None
    monkeypatch.setattr(hosts, "backend", lambda address: AnsweringEngine())
    hosts.recheck(after=60)  # asked a moment ago: not yet
    assert hosts.down() == {A}
    hosts.recheck(after=0)
    assert hosts.down() == set() and hosts.place() == A


@pytest.mark.django_db
def test_an_engine_that_cannot_be_reached_is_marked_down_not_raised(settings):
    """A worker that starts while a host is down cannot even make its client (docker-py
    asks the engine for its API version): the host is marked down with the reason."""
    settings.CODEACT_DOCKER_HOSTS = [A, "tcp://127.0.0.1:1"]  # nothing listens on port 1
    with pytest.raises(SandboxError) as refused:
        hosts.backend("tcp://127.0.0.1:1")
    assert not refused.value.permanent and "does not answer" in refused.value.message
    assert hosts.answers("tcp://127.0.0.1:1") is False
    assert hosts.down() == {"tcp://127.0.0.1:1"}
    assert "does not answer" in SandboxHost.objects.get(address="tcp://127.0.0.1:1").last_error
