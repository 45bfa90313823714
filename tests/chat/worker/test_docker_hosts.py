"""Sandboxes on several Docker hosts, for real: a second dockerd started by the test
(tests/support/dockerd.py) is the second host. New sandboxes spread over both;
stopping the second engine mid-conversation gives that conversation a sandbox on
the first, with its files restored and the notice that variables are gone."""

from __future__ import annotations

import hashlib
import shutil
from unittest import mock

import pytest

from chat.models import SandboxHost, SandboxRecord, WorkspaceFile
from chat.worker import hosts, pool
from chat.worker.executor import STATE_LOST_NOTICE
from sandbox.docker_backend import docker_client
from sandbox.image_tag import image_tag
from tests.factories import ConversationFactory
from tests.support.dockerd import second_engine
from tests.support.executor_run import Run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="needs dockerd"),
]
FIRST = "unix:///var/run/docker.sock"


@pytest.fixture(scope="module")
def engine():
    with second_engine(image_tag(), docker_client()) as engine:
        yield engine


@pytest.fixture
def two_hosts(engine, settings):
    settings.CODEACT_POOL_SIZE = 0
    settings.CODEACT_SANDBOXES_PER_USER = 10
    settings.CODEACT_SANDBOX_RUNTIME = "runc"  # the second engine has no gVisor registered
    settings.CODEACT_DOCKER_HOSTS = [FIRST, engine.url]
    with mock.patch("chat.actions.messages.send_turn"):
        yield engine
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")
    pool.reconcile(grace=0)


def test_new_sandboxes_go_to_the_host_with_the_most_room(two_hosts, owner):
    claims = [pool.claim_for(ConversationFactory(owner=owner)) for _ in range(4)]
    try:
        placed = [claim.record.host for claim in claims]
        assert sorted(placed) == sorted([FIRST, FIRST, two_hosts.url, two_hosts.url])
        on_second = {c.id for c in two_hosts.client().containers.list()}
        for claim in claims:
            assert (claim.record.container_id in on_second) == (claim.record.host != FIRST)
            result = claim.sandbox.execute("print(6 * 7)")
            assert result.status == "ok" and result.outputs[0]["text"] == "42\n", result
        # Any worker attaches through the record's host.
        again = pool.claim_for(claims[1].record.conversation)
        assert not again.fresh and again.record.host == claims[1].record.host
        again.sandbox.detach()
    finally:
        for claim in claims:
            claim.sandbox.detach()


def test_a_host_that_stops_gives_its_conversations_a_sandbox_elsewhere(two_hosts, owner):
    conversation = ConversationFactory(owner=owner)
    data = b"city,visits\nOslo,3\nLima,5\n"
    WorkspaceFile.objects.create(
        conversation=conversation, path="visits.csv", origin="upload", size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), content=data,
    )  # fmt: skip
    # Fill the first host's share so that the conversation lands on the second.
    busy = pool.claim_for(ConversationFactory(owner=owner))
    assert busy.record.host == FIRST
    run = Run(conversation)
    executed, _ = run.execute("kept = 1\nprint(open('visits.csv').read().count(','))")
    assert executed.result.status == "ok", executed.result
    assert run.executor.record is not None and run.executor.record.host == two_hosts.url
    first_record = run.executor.record

    two_hosts.stop()  # the second machine goes away mid-conversation

    executed, text = run.execute("print(open('visits.csv').read().splitlines()[2])")
    if executed.result.status != "ok":  # the cell that saw the engine go is reported
        executed, text = run.execute("print(open('visits.csv').read().splitlines()[2])")
    assert executed.result.status == "ok", executed.result
    assert text == "Lima,5\n"
    assert ("state_lost", STATE_LOST_NOTICE) in run.notices
    assert run.executor.record is not None and run.executor.record.host == FIRST
    assert SandboxRecord.objects.get(pk=first_record.pk).removed_reason == "host_down"
    assert hosts.down() == {two_hosts.url}
    assert SandboxHost.objects.get(address=two_hosts.url).last_error
    run.finish()
    busy.sandbox.detach()

    # While it is down, nothing new is placed there, and listing skips it.
    another = pool.claim_for(ConversationFactory(owner=owner))
    assert another.record.host == FIRST
    another.sandbox.detach()
    assert {item.host for item in pool.list_sandboxes()} == {FIRST}

    # Back up: beat's check marks it up, and it takes new sandboxes again.
    two_hosts.start()
    assert hosts.check() == {FIRST: True, two_hosts.url: True}
    assert hosts.down() == set()
