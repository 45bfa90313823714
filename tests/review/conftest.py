"""The review suite's users and data: a reviewer (the Reviewers group), a
superuser, and a conversation with a plot, an error and an answer."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group

from chat.models import Conversation
from review.permissions import REVIEWERS_GROUP, ensure_reviewers_group
from tests.factories import UserFactory, analysis_conversation


@pytest.fixture
def reviewer(db: None) -> Any:
    user = UserFactory(username="reviewer", is_staff=True)
    ensure_reviewers_group()
    user.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
    return user


@pytest.fixture
def superuser(db: None) -> Any:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def analysis(owner: Any) -> Conversation:
    return analysis_conversation(owner)
