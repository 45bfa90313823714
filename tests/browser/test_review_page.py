"""A user rates an answer; a reviewer finds the conversation in the admin, reads
its transcript with the plot, flags it, notes it and exports it for training."""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import expect

from chat.models import AuditRecord, Conversation, Execution, Feedback
from review import datasets
from review.permissions import REVIEWERS_GROUP, ensure_reviewers_group
from tests.browser.conftest import screenshot
from tests.browser.test_chat_page import remove_sandboxes, start_conversation
from tests.conftest import session_cookie
from tests.factories import UserFactory, analysis_conversation
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]

PLOT = (
    "import matplotlib.pyplot as plt\n"
    "plt.plot([3, 5, 4, 8], marker='o')\n"
    "plt.title('Weekly sign-ups')\n"
    "plt.show()"
)


def log_in(page, web, user):
    """A session for a user made in the test (its password hasher is the test's own)."""
    value = session_cookie(user).split("=", 1)[1]
    page.context.add_cookies([{"name": "sessionid", "value": value, "url": web}])


def test_a_rated_answer_is_reviewed_flagged_and_exported(page, web, browser, model_server):
    model_server.push(
        Script(text=f"Plotting the numbers.\n<execute>\n{PLOT}\n</execute>"),
        Script(text="Sign-ups peaked in week 4 at **8**."),
    )
    start_conversation(page, web, "rosa")
    page.get_by_label("Message").fill("Plot 3, 5, 4, 8 as weekly sign-ups.")
    page.get_by_label("Message").press("Enter")
    answer = page.locator(".msg-final")
    expect(answer).to_contain_text("peaked in week 4", timeout=30_000)
    remove_sandboxes()

    # The user rates the answer down and says why; it survives a reload.
    answer.get_by_role("button", name="Bad answer").click()
    comment = answer.get_by_label("Comment on this answer")
    expect(comment).to_be_visible()
    comment.fill("The axis has no labels.")
    answer.get_by_role("button", name="Send").click()
    expect(page.locator("#composer-hint")).to_contain_text("feedback was saved")
    page.reload()
    expect(answer.get_by_role("button", name="Bad answer")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(answer.get_by_label("Comment on this answer")).to_have_value("The axis has no labels.")
    # After a reload the cell still shows its plot (its outputs come before it in the snapshot).
    plot = page.get_by_role("region", name="Code cell 1").locator("img.output-image")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.complete && img.naturalWidth") > 0
    screenshot(page, "15-rated-answer")
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment) == (-1, "The axis has no labels.")
    conversation = Conversation.objects.get(owner__username="rosa")

    # A reviewer filters on bad ratings and opens the transcript.
    reviewer = UserFactory(username="rita", is_staff=True)
    ensure_reviewers_group()
    reviewer.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    desk = context.new_page()
    log_in(desk, web, reviewer)
    desk.goto(f"{web}/admin/chat/conversation/?rating=down")
    desk.get_by_role("link", name=conversation.title).click()
    expect(desk.get_by_role("heading", name=conversation.title)).to_be_visible()
    cell = desk.get_by_role("region", name="Code cell 1")
    expect(cell.locator(".cell-status")).to_have_text("Done")
    image = cell.locator("img.output-image")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") > 0
    expect(desk.locator(".feedback-shown")).to_contain_text("The axis has no labels.")
    expect(cell.locator(".audit")).to_contain_text("Sandbox")

    desk.get_by_role("button", name="Flag for attention").click()
    expect(desk.get_by_text("Flagged for attention.")).to_be_visible()
    desk.get_by_label("New note").fill("Ask the model to label axes by default.")
    desk.get_by_role("button", name="Add note").click()
    expect(desk.locator(".notes")).to_contain_text("label axes by default")
    screenshot(desk, "12-review-transcript", full_page=True)

    # The flagged set leaves as training JSONL that validates.
    desk.goto(f"{web}/admin/chat/conversation/?flagged__exact=1")
    screenshot(desk, "13-review-admin-list")
    desk.locator("#action-toggle").check()
    desk.locator("select[name=action]").select_option("export_jsonl")
    with desk.expect_download() as download:
        desk.get_by_role("button", name="Run").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    datasets.check_training_record(record)
    assert record["id"] == str(conversation.id) and record["rating"] == {"up": 0, "down": 1}
    context.close()

    actions = set(AuditRecord.objects.filter(actor="rita").values_list("action", flat=True))
    assert {"transcript", "flag", "note", "export_jsonl"} <= actions


def test_the_usage_overview_for_staff(page, web, model_server):
    for name, status in (("ada", "error"), ("ben", "ok"), ("ada", "timeout")):
        user = User.objects.filter(username=name).first() or UserFactory(username=name)
        conversation = analysis_conversation(user)
        Execution.objects.filter(conversation=conversation).update(status=status, duration=1.5)
    log_in(page, web, UserFactory(username="sam", is_staff=True))
    page.goto(f"{web}/review/usage/?days=30")
    expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    usage = page.get_by_role("table", name="Usage by day and user")
    ada = usage.get_by_role("row").filter(has_text="ada")
    expect(ada).to_contain_text("KeyError")
    expect(ada).to_contain_text("Timeout")
    quotas = page.get_by_role("table", name="Quotas now")
    expect(quotas.get_by_role("row").filter(has_text="ada")).to_contain_text("of 1,000")
    expect(page.get_by_role("complementary", name="Top error types")).to_contain_text("KeyError")
    screenshot(page, "14-usage")
