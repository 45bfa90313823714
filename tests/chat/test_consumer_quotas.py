"""Socket quotas: too many `resume` frames (each a full resync from the database)
get a clear error frame, and the socket stays usable."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from tests.conftest import open_socket
from tests.factories import ConversationFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


async def test_it_answers_too_many_resumes_with_an_error_frame(owner, settings):
    settings.CODEACT_QUOTA_RESUMES = 3
    settings.CODEACT_QUOTA_RESUME_WINDOW = 3600  # the window does not roll during the test
    conversation = await database_sync_to_async(ConversationFactory)(owner=owner)
    async with open_socket(owner, conversation.id) as sock:
        assert (await sock.receive())["type"] == "hello"
        for _ in range(3):
            await sock.send({"type": "resume", "after_seq": 0})
            assert (await sock.receive())["type"] == "sync"
        await sock.send({"type": "resume", "after_seq": 0})
        refused = await sock.receive()
        assert refused["type"] == "error" and refused["code"] == "quota_resumes"
        assert "at most 3 every 3600 seconds" in refused["message"]
        assert "Try again in" in refused["message"]
        await sock.send({"type": "ping"})
        assert (await sock.receive())["type"] == "pong"
    # Another socket of the same user shares the count: the limit is per user.
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()
        await sock.send({"type": "resume", "after_seq": 0})
        assert (await sock.receive())["code"] == "quota_resumes"
