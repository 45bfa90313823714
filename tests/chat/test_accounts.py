"""Who can get an account (CODEACT_SIGNUP) and how often a login may be tried."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.models import Invite
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW = {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD}


def sign_up(client: Client, invite: str = "", username: str = "newcomer") -> object:
    data = NEW | {"username": username}
    url = reverse("signup") + (f"?invite={invite}" if invite else "")
    return client.post(url, data | ({"invite": invite} if invite else {}))


def test_it_closes_sign_up(client, settings):
    settings.CODEACT_SIGNUP = "closed"
    page = client.get(reverse("signup"))
    assert page.status_code == 403 and "Sign-up is closed" in page.content.decode()
    assert sign_up(client).status_code == 403
    assert not User.objects.filter(username="newcomer").exists()
    assert reverse("signup") not in client.get(reverse("login")).content.decode()


def test_open_sign_up_is_linked_from_the_login_page(client, settings):
    settings.CODEACT_SIGNUP = "open"
    assert reverse("signup") in client.get(reverse("login")).content.decode()


def test_it_asks_for_an_invite(client, settings):
    settings.CODEACT_SIGNUP = "invite"
    page = client.get(reverse("signup"))
    assert page.status_code == 403 and "by invitation" in page.content.decode()
    assert sign_up(client).status_code == 403
    assert sign_up(client, invite="made-up").status_code == 403
    assert not User.objects.filter(username="newcomer").exists()
    assert reverse("signup") not in client.get(reverse("login")).content.decode()


def test_an_invite_admits_one_sign_up(client, settings, staff):
    settings.CODEACT_SIGNUP = "invite"
    invite = Invite.objects.create(note="for Ada", created_by=staff)
    form = client.get(reverse("signup") + f"?invite={invite.token}")
    assert form.status_code == 200 and invite.token in form.content.decode()
    assert sign_up(client, invite.token).status_code == 302
    invite.refresh_from_db()
    assert invite.used_by == User.objects.get(username="newcomer") and invite.used_at

    again = sign_up(Client(), invite.token, username="second")
    assert again.status_code == 403 and "already used" in again.content.decode()
    assert not User.objects.filter(username="second").exists()


def test_a_revoked_or_expired_invite_admits_nobody(client, settings):
    settings.CODEACT_SIGNUP = "invite"
    revoked = Invite.objects.create(revoked_at=timezone.now())
    expired = Invite.objects.create(expires_at=timezone.now() - timedelta(minutes=1))
    for invite in (revoked, expired):
        assert sign_up(client, invite.token).status_code == 403
    assert not User.objects.filter(username="newcomer").exists()


def test_the_admin_makes_an_invite_and_shows_its_link(client, settings):
    settings.CODEACT_SIGNUP = "invite"
    root = User.objects.create_superuser("root", password=PASSWORD)
    client.force_login(root)
    added = client.post(reverse("admin:chat_invite_add"), {"note": "for Ada"}, follow=True)
    invite = Invite.objects.get(note="for Ada")
    assert invite.created_by == root
    assert f"/accounts/signup/?invite={invite.token}" in added.content.decode()
    listing = client.get(reverse("admin:chat_invite_changelist")).content.decode()
    assert invite.token in listing
    client.post(
        reverse("admin:chat_invite_changelist"),
        {"action": "revoke", "_selected_action": [invite.pk]},
    )
    invite.refresh_from_db()
    assert invite.revoked_at is not None


def test_it_locks_out_a_username_from_an_address_after_failed_logins(client, owner, settings):
    settings.AXES_FAILURE_LIMIT = 3
    wrong = {"username": "owner", "password": "wrong"}
    for _ in range(2):
        assert client.post(reverse("login"), wrong, REMOTE_ADDR="10.0.0.1").status_code == 200
    locked = client.post(reverse("login"), wrong, REMOTE_ADDR="10.0.0.1")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "Try again in 15 minutes" in locked.content.decode()
    right = {"username": "owner", "password": PASSWORD}
    assert client.post(reverse("login"), right, REMOTE_ADDR="10.0.0.1").status_code == 429
    # The same user from another address is not locked out by someone else's guesses.
    assert Client().post(reverse("login"), right, REMOTE_ADDR="10.0.0.2").status_code == 302


def test_behind_a_trusted_proxy_the_lockout_is_by_the_clients_address(client, owner, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.CODEACT_TRUSTED_PROXIES = ["10.9.0.0/16"]
    wrong = {"username": "owner", "password": "wrong"}
    via_proxy = {"REMOTE_ADDR": "10.9.0.5"}
    for _ in range(2):
        client.post(reverse("login"), wrong, HTTP_X_FORWARDED_FOR="203.0.113.7", **via_proxy)
    right = {"username": "owner", "password": PASSWORD}
    locked = client.post(reverse("login"), right, HTTP_X_FORWARDED_FOR="203.0.113.7", **via_proxy)
    assert locked.status_code == 429
    # Another client through the same proxy is not locked out with the first.
    other = Client().post(reverse("login"), right, HTTP_X_FORWARDED_FOR="198.51.100.4", **via_proxy)
    assert other.status_code == 302
