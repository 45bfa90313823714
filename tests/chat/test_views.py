import pytest
from django.urls import reverse

from chat.models import Conversation
from tests.factories import PASSWORD, ConversationFactory

pytestmark = pytest.mark.django_db


def test_it_signs_up_and_logs_in_a_new_user(client):
    response = client.post(
        reverse("signup"),
        {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert client.get(reverse("chat:home")).context["user"].username == "newcomer"


def test_it_shows_signup_errors(client):
    response = client.post(
        reverse("signup"), {"username": "x", "password1": "short", "password2": "other"}
    )
    assert response.status_code == 200
    assert "form-error" in response.content.decode()


def test_it_logs_in_and_out(client, owner):
    response = client.post(reverse("login"), {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302
    client.post(reverse("logout"))
    assert client.get(reverse("chat:home")).status_code == 302


def test_pages_need_a_login(client, owner):
    conversation = ConversationFactory(owner=owner)
    for url in (reverse("chat:home"), reverse("chat:conversation", args=[conversation.id])):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_the_list_shows_only_my_conversations(client, owner, other_user):
    mine = ConversationFactory(owner=owner, title="Mine")
    ConversationFactory(owner=other_user, title="Theirs")
    client.force_login(owner)
    page = client.get(reverse("chat:home")).content.decode()
    assert "Mine" in page and "Theirs" not in page
    assert str(mine.id) in page


def test_it_creates_renames_and_deletes(client, owner):
    client.force_login(owner)
    response = client.post(reverse("chat:new"))
    conversation = Conversation.objects.get(owner=owner)
    assert response.url == reverse("chat:conversation", args=[conversation.id])
    page = client.get(response.url)
    assert page.status_code == 200
    assert 'id="initial-data"' in page.content.decode()
    assert "Content-Security-Policy" in page.headers

    client.post(reverse("chat:rename", args=[conversation.id]), {"title": "  Sales   report "})
    conversation.refresh_from_db()
    assert conversation.title == "Sales report"

    client.post(reverse("chat:delete", args=[conversation.id]))
    assert not Conversation.objects.filter(id=conversation.id).exists()


def test_another_users_conversation_is_a_404(client, owner, other_user):
    conversation = ConversationFactory(owner=owner, title="Private")
    client.force_login(other_user)
    assert client.get(reverse("chat:conversation", args=[conversation.id])).status_code == 404
    rename = client.post(reverse("chat:rename", args=[conversation.id]), {"title": "pwned"})
    assert rename.status_code == 404
    assert client.post(reverse("chat:delete", args=[conversation.id])).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Private"


def test_the_admin_is_for_staff(client, owner, staff):
    client.force_login(owner)
    assert client.get("/admin/").status_code == 302
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200
