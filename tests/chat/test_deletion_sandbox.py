"""With the real worker: deleting a conversation removes its sandbox container
within seconds, instead of leaving it to the idle reaper (15 minutes)."""

from __future__ import annotations

import time

import docker
import pytest
from channels.db import database_sync_to_async

from chat.actions import conversations
from chat.models import SandboxRecord
from sandbox.docker_backend import docker_client
from tests.conftest import open_socket
from tests.factories import ConversationFactory
from tests.support.scripted_model import Script

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.usefixtures("remove_sandboxes"),
]

db = database_sync_to_async


def container_exists(container_id: str) -> bool:
    try:
        docker_client().containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


def wait_until_gone(container_id: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not container_exists(container_id):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("retention", ["delete", "keep-for-review"])
async def test_it_removes_the_container_when_the_conversation_is_deleted(
    worker, model_server, owner, settings, retention
):
    settings.CODEACT_RETENTION = retention
    conversation = await db(ConversationFactory)(owner=owner)
    model_server.push(Script(text="<execute>\nprint(6 * 7)\n</execute>"), Script(text="42."))
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Six times seven?"})
        finished = await sock.turn_finished(60)
    assert finished["turn"]["status"] == "done"
    record = await db(SandboxRecord.objects.get)(conversation=conversation, state="claimed")
    assert await db(container_exists)(record.container_id)

    await db(conversations.do_delete_conversation)(conversation)

    assert await db(wait_until_gone)(record.container_id, 20.0)
    record = await db(SandboxRecord.objects.get)(pk=record.pk)
    assert (record.state, record.removed_reason) == ("removed", "deleted")
