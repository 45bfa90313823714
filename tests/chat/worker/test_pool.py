"""The sandbox lifecycle against real Docker and PostgreSQL."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import SandboxRecord
from chat.worker import pool, start_slots
from sandbox.api import SandboxError
from sandbox.docker_backend import DockerBackend
from tests.factories import ConversationFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture(autouse=True)
def cleanup():
    yield
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")
    pool.reconcile(grace=0)


def container_running(container_id):
    try:
        return pool._client().containers.get(container_id).status == "running"
    except Exception:
        return False


def test_the_pool_fills_and_a_claim_takes_a_warm_sandbox(owner, settings):
    settings.CODEACT_POOL_SIZE = 2
    assert pool.top_up_pool() == 2
    assert pool.top_up_pool() == 0
    conversation = ConversationFactory(owner=owner)

    claim = pool.claim_for(conversation)
    assert claim.fresh
    assert claim.record.state == "claimed" and claim.record.conversation == conversation
    # numpy, pandas and matplotlib were imported while the sandbox was in the pool
    result = claim.sandbox.execute(
        "print(type(np).__name__, type(pd).__name__, type(plt).__name__)"
    )
    assert result.status == "ok", result
    assert result.outputs[0]["text"] == "module module module\n"
    claim.sandbox.execute("kept = 7")
    claim.sandbox.detach()
    assert SandboxRecord.objects.filter(state="warm").count() == 1

    again = pool.claim_for(conversation)
    assert not again.fresh and again.record.pk == claim.record.pk
    assert again.sandbox.execute("print(kept)").outputs[0]["text"] == "7\n"
    again.sandbox.detach()


def test_a_claim_starts_a_sandbox_when_the_pool_is_empty(owner, settings):
    settings.CODEACT_POOL_SIZE = 0
    claim = pool.claim_for(ConversationFactory(owner=owner))
    assert claim.fresh
    assert claim.sandbox.execute("1 + 1").status == "ok"
    claim.sandbox.detach()


def test_a_new_sandboxs_first_cell_gets_its_whole_time_limit(owner, settings):
    """A sandbox started for its conversation imports its preloads first; the first
    cell waits behind them, and that wait must not count against the cell's limit
    (under load -- fifty kernels starting at once -- it took more than the limit)."""
    settings.CODEACT_POOL_SIZE = 0
    settings.CODEACT_SANDBOX_LIMITS = {**settings.CODEACT_SANDBOX_LIMITS, "cell_timeout": 1.0}
    claim = pool.claim_for(ConversationFactory(owner=owner))
    result = claim.sandbox.execute("print(type(pd).__name__)")
    claim.sandbox.detach()
    assert result.status == "ok", result
    assert result.outputs[0]["text"] == "module\n"


def test_a_dead_sandbox_is_replaced_and_the_loss_reported(owner, settings):
    settings.CODEACT_POOL_SIZE = 0
    conversation = ConversationFactory(owner=owner)
    first = pool.claim_for(conversation)
    pool._client().api.kill(first.record.container_id)  # the container dies under it
    second = pool.claim_for(conversation)
    assert second.fresh and second.record.pk != first.record.pk
    assert SandboxRecord.objects.get(pk=first.record.pk).state == "removed"
    second.sandbox.detach()


def test_the_per_user_cap_gives_a_clear_error(owner, other_user, settings):
    settings.CODEACT_POOL_SIZE = 0
    settings.CODEACT_SANDBOXES_PER_USER = 1
    pool.claim_for(ConversationFactory(owner=owner)).sandbox.detach()
    with pytest.raises(SandboxError) as refused:
        pool.claim_for(ConversationFactory(owner=owner))
    assert refused.value.permanent
    assert "the most allowed" in refused.value.message
    pool.claim_for(ConversationFactory(owner=other_user)).sandbox.detach()


def test_idle_sandboxes_are_reaped(owner, settings):
    settings.CODEACT_POOL_SIZE = 0
    claim = pool.claim_for(ConversationFactory(owner=owner))
    claim.sandbox.detach()
    SandboxRecord.objects.filter(pk=claim.record.pk).update(
        last_used_at=timezone.now() - timedelta(seconds=settings.CODEACT_SANDBOX_IDLE_SECONDS + 1)
    )
    assert pool.reap_idle() == 1
    assert SandboxRecord.objects.get(pk=claim.record.pk).removed_reason == "idle"
    assert not container_running(claim.record.container_id)


def test_orphans_are_removed_and_strangers_left_alone(owner, settings):
    settings.CODEACT_POOL_SIZE = 1
    pool.top_up_pool()
    kept = SandboxRecord.objects.get(state="warm")
    orphan = pool._new_container("")  # labelled as ours, unknown to the registry
    orphan.detach()
    stranger = pool._client().containers.run(
        pool.image(), entrypoint=["sleep", "60"], detach=True,
        labels={"codeact.managed": "1", "codeact.deployment": "someone-else"},
    )  # fmt: skip
    try:
        # Just created: it may be a sandbox whose row another worker is about to write.
        assert pool.reconcile() == {"orphans": 0, "gone": 0}
        assert container_running(orphan.id)
        assert pool.reconcile(grace=0) == {"orphans": 1, "gone": 0}
        assert not container_running(orphan.id)
        assert container_running(kept.container_id)
        assert container_running(stranger.id)
    finally:
        stranger.remove(force=True)


def _claim_at_once(conversations):
    """Claim sandboxes for these conversations from as many threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    barrier = threading.Barrier(len(conversations))

    def claim(conversation):
        barrier.wait()
        try:
            claimed = pool.claim_for(conversation)
            claimed.sandbox.detach()
            return claimed
        except SandboxError as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(len(conversations)) as threads:
        return list(threads.map(claim, conversations))


def test_the_per_user_cap_holds_when_claims_race(owner, settings):
    settings.CODEACT_POOL_SIZE = 0
    settings.CODEACT_SANDBOXES_PER_USER = 1
    results = _claim_at_once([ConversationFactory(owner=owner) for _ in range(5)])
    assert sum(isinstance(r, pool.Claim) for r in results) == 1
    assert all("the most allowed" in r.message for r in results if isinstance(r, SandboxError))
    assert SandboxRecord.objects.filter(state="claimed", owner=owner).count() == 1
    running = pool.managed_containers(pool._client(), **pool.deployment_labels())
    assert len(running) == 1


def test_the_host_cap_bounds_every_user_and_the_pool(owner, other_user, settings):
    settings.CODEACT_POOL_SIZE = 0
    settings.CODEACT_SANDBOXES_PER_HOST = 2
    third = UserFactory(username="third")
    results = _claim_at_once([ConversationFactory(owner=u) for u in (owner, other_user, third)])
    refused = [r for r in results if isinstance(r, SandboxError)]
    assert len(refused) == 1
    assert "the most this server runs" in refused[0].message
    assert not refused[0].permanent  # it frees up: a Retry later can work
    settings.CODEACT_POOL_SIZE = 3
    assert pool.top_up_pool() == 0  # the pool does not start past the host cap
    assert SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE).count() == 2


def test_sandboxes_start_a_few_at_a_time(owner, settings, monkeypatch):
    """A burst of new conversations queues for start slots instead of asking the
    engine for every container at once; every one of them still gets its sandbox."""
    settings.CODEACT_POOL_SIZE = 0
    settings.CODEACT_SANDBOX_STARTS_AT_ONCE = 2
    real = DockerBackend.start
    lock = threading.Lock()
    starting = [0]
    most = [0]

    def counted(*args, **kwargs):
        with lock:
            starting[0] += 1
            most[0] = max(most[0], starting[0])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                starting[0] -= 1

    monkeypatch.setattr(DockerBackend, "start", counted)
    users = [owner, *(UserFactory(username=f"burst{i}") for i in range(4))]
    results = _claim_at_once([ConversationFactory(owner=u) for u in users])
    assert all(isinstance(r, pool.Claim) for r in results), results
    assert most[0] == 2


def test_a_start_that_waits_too_long_for_a_slot_says_so(settings):
    settings.CODEACT_SANDBOX_STARTS_AT_ONCE = 1
    held, release = threading.Event(), threading.Event()

    def hold():
        from django.db import connection

        with start_slots.start_slot(wait=5):
            held.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        with pytest.raises(SandboxError) as refused, start_slots.start_slot(wait=0.5):
            pass
        assert "starting many Python sandboxes at once (1 at a time)" in refused.value.message
        assert not refused.value.permanent
    finally:
        release.set()
        holder.join(10)
    with start_slots.start_slot(wait=5):  # freed by its holder
        pass


def test_a_failed_start_frees_its_slot(owner, settings, monkeypatch):
    settings.CODEACT_POOL_SIZE = 0
    settings.CODEACT_SANDBOX_STARTS_AT_ONCE = 1

    def broken(*args, **kwargs):
        raise SandboxError("The engine is down.", permanent=False)

    monkeypatch.setattr(DockerBackend, "start", broken)
    with pytest.raises(SandboxError, match="engine is down"):
        pool.claim_for(ConversationFactory(owner=owner))
    # Advisory locks stack within one session: only another connection can tell
    # whether the slot was given back.
    assert _slot_free_for_another_session()


def _slot_free_for_another_session() -> bool:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def take() -> bool:
        try:
            with start_slots.start_slot(wait=1):
                return True
        except SandboxError:
            return False
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(take).result()
