"""What an operator has to bound the sandboxes: `manage.py sandboxes` lists and
stops them, and `make run` (scripts/serve.py) stops its own on exit."""

from __future__ import annotations

import io
import signal
import sys
import tempfile

import pytest
from django.core.management import CommandError, call_command

from chat.models import SandboxRecord
from chat.worker import pool
from tests.factories import ConversationFactory
from tests.support.processes import ARTIFACTS, Process, free_port, process_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture(autouse=True)
def cleanup(settings):
    settings.CODEACT_POOL_SIZE = 0
    yield
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")
    pool.reconcile(grace=0)


def running_ids() -> set[str]:
    return {c.id for c in pool.managed_containers(pool._client(), **pool.deployment_labels())}


def sandboxes(*args: str) -> str:
    out = io.StringIO()
    call_command("sandboxes", *args, stdout=out)
    return out.getvalue()


def test_it_lists_each_sandbox_with_its_conversation_and_owner(owner):
    conversation = ConversationFactory(owner=owner)
    claimed = pool.claim_for(conversation)
    claimed.sandbox.detach()
    warm = pool.create_warm()
    listing = sandboxes()
    rows = {line.split()[0]: line for line in listing.splitlines()[1:-1]}
    assert set(rows) == {claimed.record.container_id[:12], warm.container_id[:12]}
    assert f"claimed  {conversation.pk}" in rows[claimed.record.container_id[:12]]
    assert "owner" in rows[claimed.record.container_id[:12]]
    assert rows[warm.container_id[:12]].split()[1] == "warm"
    assert listing.splitlines()[-1].startswith("2 sandboxes")


def test_it_stops_one_sandbox_by_id_prefix_and_then_all(owner):
    first = pool.claim_for(ConversationFactory(owner=owner))
    first.sandbox.detach()
    second = pool.create_warm()
    assert sandboxes("--stop", first.record.container_id[:12]) == "Stopped 1 sandbox.\n"
    assert running_ids() == {second.container_id}
    assert SandboxRecord.objects.get(pk=first.record.pk).removed_reason == "operator"
    with pytest.raises(CommandError, match="No sandbox"):
        sandboxes("--stop", "0000deadbeef")
    assert sandboxes("--all") == "Stopped 1 sandbox.\n"
    assert running_ids() == set()
    assert not SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE).exists()


def test_make_run_stops_its_sandboxes_when_it_stops(owner, settings):
    port = free_port()
    with tempfile.TemporaryDirectory() as var:
        env = process_env(
            CODEACT_PORT=str(port),
            CODEACT_WORKER_PROCESSES="1",
            CODEACT_VAR_DIR=var,
            CODEACT_ADMIN_PASSWORD="not-printed-anywhere",
            SECRET_KEY=settings.SECRET_KEY,  # its own var directory has no key file
        )
        log = ARTIFACTS / "serve.log"
        offset = log.stat().st_size if log.exists() else 0  # the log is appended to
        serve = Process("serve", [sys.executable, "scripts/serve.py"], env)
        try:
            serve.wait_until(lambda: "ready." in serve.log_text()[offset:], timeout=90)
            claimed = pool.claim_for(ConversationFactory(owner=owner))
            claimed.sandbox.detach()
            assert claimed.record.container_id in running_ids()
            serve.proc.send_signal(signal.SIGINT)
            assert serve.proc.wait(60) == 0
        finally:
            serve.kill()
    assert running_ids() == set()
    assert SandboxRecord.objects.get(pk=claimed.record.pk).state == "removed"
