import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]

ANSWER = (
    "Here is a quick summary:\n\n"
    "| metric | value |\n|---|---|\n| mean | 4.2 |\n| max | 9 |\n\n"
    "```python\nprint(sum(range(10)))\n```\n\nThe **total** is 45."
)


def sign_up(page, web, username):
    page.goto(f"{web}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill("correct-horse-battery-staple")
    page.get_by_label("Password confirmation").fill("correct-horse-battery-staple")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("button", name="New conversation")).to_be_visible()


def test_a_new_user_chats_and_sees_the_history_after_a_reload(page, web, model_server):
    model_server.push(Script(text=ANSWER, delay=0.04))
    sign_up(page, web, "ada")
    screenshot(page, "01-home")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    screenshot(page, "02-empty-conversation")

    page.get_by_label("Message").fill("Summarise the numbers, please.")
    page.get_by_label("Message").press("Enter")
    streaming = page.locator(".msg-assistant .msg-body.streaming")
    expect(streaming).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(streaming).to_contain_text("summary")
    screenshot(page, "03-streaming")

    transcript = page.get_by_role("log", name="Conversation")
    expect(transcript.locator("table")).to_be_visible(timeout=15_000)
    expect(transcript.locator("strong", has_text="total")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator("#conversation-title")).to_have_text("Summarise the numbers, please.")
    screenshot(page, "04-answered")

    page.reload()
    expect(transcript.get_by_text("Summarise the numbers, please.")).to_be_visible()
    expect(transcript.locator("table")).to_be_visible()
    expect(transcript.locator("pre.code")).to_contain_text("print(sum(range(10)))")
    assert page.locator(".msg").count() == 2


def test_a_failed_reply_shows_the_reason_and_retry_works(page, web, model_server):
    model_server.push(Script(status=500), Script(text="Recovered."))
    sign_up(page, web, "grace")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    page.get_by_label("Message").fill("Hello?")
    page.get_by_role("button", name="Send").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("HTTP 500")
    screenshot(page, "05-model-error")
    alert.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("log", name="Conversation")).to_contain_text("Recovered.")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("log", name="Conversation").get_by_text("Hello?")).to_have_count(1)


def test_another_user_cannot_open_the_conversation(page, web, browser, model_server):
    sign_up(page, web, "owner1")
    page.get_by_role("button", name="New conversation").click()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]+/$"))
    private_url = page.url

    other = browser.new_context()
    intruder = other.new_page()
    sign_up(intruder, web, "intruder")
    response = intruder.goto(private_url)
    assert response.status == 404
    expect(intruder.get_by_role("heading", name="Not found")).to_be_visible()
    other.close()
