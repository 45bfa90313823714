from __future__ import annotations

from unittest import mock

import pytest

from tests.factories import ConversationFactory


@pytest.fixture(autouse=True)
def no_worker():
    """These tests look at rows only: the task is not sent anywhere."""
    with mock.patch("chat.actions.messages.send_turn") as send:
        yield send


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner, title="New conversation")
