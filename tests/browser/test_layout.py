"""Every page at a phone's size (390 by 844) and at a desktop's: nothing scrolls the
document sideways or sticks out of the screen, wide output scrolls inside its own
box, the composer's buttons stay on screen, and on a phone the sidebar is a drawer
behind a menu button that works with a finger and with the keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from chat.models import Execution, Output
from review.permissions import REVIEWERS_GROUP, ensure_reviewers_group
from tests.browser.conftest import screenshot
from tests.browser.test_chat_page import ask, remove_sandboxes
from tests.browser.test_review_page import log_in
from tests.factories import (
    ConversationFactory,
    EvaluationFactory,
    EvaluationRunFactory,
    UserFactory,
    analysis_conversation,
)
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
SIZES = {"phone": PHONE, "desktop": DESKTOP}

LONG_TITLE = "A conversation whose title goes on and on " * 3 + "Supercalifragilistic" * 3
LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 4
LONG_URL = "https://example.org/" + "/".join(f"segment-{i}" for i in range(30))
WIDE_TABLE = (
    "| " + " | ".join(f"column {i}" for i in range(14)) + " |\n"
    "|" + "---|" * 14 + "\n"
    "| " + " | ".join(f"{i * 1234.5:,.1f}" for i in range(14)) + " |"
)
WIDE_CELL = (
    "import numpy as np\n"
    "import pandas as pd\n"
    "print('0123456789' * 200)\n"
    "frame = pd.DataFrame(np.arange(60).reshape(2, 30) * 1e6,"
    " columns=[f'measurement_{i}' for i in range(30)])\n"
    "print(frame.to_string())\n"
    "frame"
)
WIDE_ANSWER = (
    f"Done. One word: {LONG_WORD}, and a link: {LONG_URL}\n\n{WIDE_TABLE}\n\n"
    "```python\nresult = " + " + ".join(f"value_{i}" for i in range(40)) + "\n```\n\n"
    "<solution>The line has 2,000 characters and the table 30 columns.</solution>"
)

# Boxes that are meant to scroll (or clip) sideways: wide output, code, tables
# (the admin's list is its own .results box), the ellipsised title and
# conversation links, visually hidden labels, form fields.
SCROLL_BOXES = (
    "pre, .output, .table-scroll, .msg-body table, .results, .conv-link, .chat-header h1, "
    ".sr-only, .visually-hidden, input, select, textarea"
)

FIT = """(scrollBoxes) => {
  const doc = document.documentElement;
  const width = doc.clientWidth;
  const name = (el) => {
    const classes = typeof el.className === "string" ? el.className.trim().split(/\\s+/) : [];
    const id = el.id ? "#" + el.id : "";
    return el.tagName.toLowerCase() + id + classes.map((c) => c && "." + c).join("");
  };
  const outside = [], clipped = [];
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    // Skips what is not shown: display none, closed <details>, visibility hidden.
    const shown = el.checkVisibility({visibilityProperty: true});
    if (!shown || box.width < 2 || box.height < 2) continue;
    const wider = el.scrollWidth > el.clientWidth + 1;
    if (wider && style.overflowX !== "visible" && !el.matches(scrollBoxes)) {
      clipped.push(`${name(el)} ${el.scrollWidth}>${el.clientWidth}`);
    }
    let inBox = false;
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") { inBox = true; break; }
    }
    if (!inBox && (box.right > width + 1 || box.left < -1)) {
      outside.push(`${name(el)} ${Math.round(box.left)}..${Math.round(box.right)}`);
    }
  }
  return {scrollWidth: doc.scrollWidth, clientWidth: width, outside, clipped};
}"""


@contextmanager
def screen(browser: Any, size: str) -> Iterator[Any]:
    context = browser.new_context(**SIZES[size])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def assert_fits(page: Any, what: str) -> None:
    """The document does not scroll sideways; nothing visible sticks out of the
    screen; nothing is cut off sideways but the boxes meant to scroll."""
    report = page.evaluate(FIT, SCROLL_BOXES)
    assert report["scrollWidth"] <= report["clientWidth"], (
        f"{what}: the document is {report['scrollWidth']}px wide in a "
        f"{report['clientWidth']}px window; sticking out: {report['outside'][:8]}"
    )
    assert report["outside"] == [], f"{what}: outside the screen: {report['outside'][:8]}"
    clipped = report["clipped"][:8]
    assert clipped == [], f"{what}: cut off or scrolling sideways: {clipped}"


def assert_on_screen(page: Any, locator: Any, what: str) -> None:
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    size = page.viewport_size
    assert box is not None, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], f"{what} at {box}"
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], f"{what} at {box}"


def assert_scrolls_inside(locator: Any, what: str) -> None:
    """Wider than its box, which scrolls sideways and stays within the screen."""
    expect(locator).to_be_visible()
    locator.scroll_into_view_if_needed()
    state = locator.evaluate(
        """(el) => {
          const before = el.scrollLeft;
          el.scrollLeft = 400;
          const moved = el.scrollLeft - before;
          el.scrollLeft = before;
          const box = el.getBoundingClientRect();
          return {scrollWidth: el.scrollWidth, clientWidth: el.clientWidth, moved,
                  left: box.left, right: box.right, width: document.documentElement.clientWidth};
        }"""
    )
    assert state["scrollWidth"] > state["clientWidth"], f"{what} is not wider than its box: {state}"
    assert state["moved"] > 0, f"{what} does not scroll sideways: {state}"
    assert state["left"] >= 0 and state["right"] <= state["width"], f"{what} sticks out: {state}"


def menu_button(page: Any) -> Any:
    return page.get_by_role("button", name="Conversations", exact=True)


DRAWER_IN = "() => document.getElementById('sidebar').getBoundingClientRect().x >= 0"


def focus_in_drawer(page: Any) -> bool:
    script = "() => document.getElementById('sidebar').contains(document.activeElement)"
    return page.evaluate(script)


def check_drawer(page: Any, name: str) -> None:
    """On a phone: the sidebar is closed behind the menu button, which opens it
    (by tap and by keyboard); Escape, the backdrop and Close close it."""
    drawer = page.locator("#sidebar")
    button = menu_button(page)
    new = page.get_by_role("button", name="New conversation")
    expect(button).to_have_attribute("aria-controls", "sidebar")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(drawer).to_be_hidden()
    expect(new).to_be_hidden()
    # Closed, the drawer is out of the Tab order.
    button.focus()
    for _ in range(12):
        page.keyboard.press("Tab")
        assert not focus_in_drawer(page), "Tab reached the closed drawer"

    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(new).to_be_visible()
    assert focus_in_drawer(page), "opening the drawer moves focus into it"
    # The drawer slides in; wait until it is all on screen.
    page.wait_for_function(DRAWER_IN)
    assert_on_screen(page, new, "New conversation")
    assert_fits(page, f"{name}, drawer open")
    screenshot(page, f"layout-{name}-phone-drawer")
    # Open, Tab and Shift+Tab stay in the drawer (the page behind is inert).
    for _ in range(10):
        page.keyboard.press("Tab")
        assert focus_in_drawer(page), "Tab left the open drawer"
    for _ in range(10):
        page.keyboard.press("Shift+Tab")
        assert focus_in_drawer(page), "Shift+Tab left the open drawer"
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(drawer).to_be_hidden()
    expect(button).to_be_focused()

    # By keyboard: Enter opens, Escape closes; a tap on the backdrop closes.
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    assert focus_in_drawer(page)
    page.mouse.click(page.viewport_size["width"] - 10, page.viewport_size["height"] // 2)
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(drawer).to_be_hidden()
    expect(button).to_be_focused()
    page.keyboard.press("Space")
    expect(drawer).to_be_visible()
    page.get_by_role("button", name="Close", exact=True).click()
    expect(drawer).to_be_hidden()
    expect(button).to_be_focused()
    expect(page.locator("main")).not_to_have_attribute("inert", "")


def check_sidebar_on_desktop(page: Any) -> None:
    expect(menu_button(page)).to_be_hidden()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.get_by_role("button", name="New conversation")).to_be_visible()


@pytest.mark.parametrize("size", SIZES)
def test_the_login_and_sign_up_pages_fit(browser, web, size):
    with screen(browser, size) as page:
        page.goto(f"{web}/accounts/login/")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert_fits(page, "login")
        assert_on_screen(page, page.get_by_role("button", name="Log in"), "Log in")
        screenshot(page, f"layout-login-{size}")
        page.goto(f"{web}/accounts/signup/")
        assert_fits(page, "sign-up")
        screenshot(page, f"layout-signup-{size}", full_page=True)
        # Signing up lands on the home page, which fits too.
        page.get_by_label("Username").fill(f"new-{size}")
        page.get_by_label("Password", exact=True).fill("correct-horse-battery-staple")
        page.get_by_label("Password confirmation").fill("correct-horse-battery-staple")
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", name="What should we work out?")).to_be_visible()
        assert_fits(page, "home after sign-up")


@pytest.mark.parametrize("size", SIZES)
def test_home_fits_and_the_sidebar_is_a_drawer_on_a_phone(browser, web, size):
    user = UserFactory(username=f"home-{size}")
    ConversationFactory(owner=user, title=LONG_TITLE)
    ConversationFactory(owner=user, title="Sales by region")
    with screen(browser, size) as page:
        log_in(page, web, user)
        page.goto(f"{web}/")
        expect(page.get_by_role("heading", name="What should we work out?")).to_be_visible()
        assert_fits(page, "home")
        assert_on_screen(page, page.get_by_role("button", name="Start a conversation"), "Start")
        screenshot(page, f"layout-home-{size}")
        if size == "phone":
            check_drawer(page, "home")
            assert_fits(page, "home, drawer closed")
        else:
            check_sidebar_on_desktop(page)


def test_a_conversation_with_wide_output_fits(browser, web, model_server):
    model_server.push(
        Script(text=f"Printing wide things.\n<execute>\n{WIDE_CELL}\n</execute>"),
        Script(text=WIDE_ANSWER),
    )
    user = UserFactory(username="wide")
    ConversationFactory(owner=user, title=LONG_TITLE)
    with screen(browser, "phone") as page:
        log_in(page, web, user)
        page.goto(f"{web}/")
        page.get_by_role("button", name="Start a conversation").click()
        expect(page.locator("#connection")).to_have_text("Connected")
        assert_fits(page, "new conversation")
        assert_on_screen(page, page.get_by_role("button", name="Send"), "Send")
        assert_on_screen(page, page.locator(".btn-attach"), "attach")
        screenshot(page, "layout-conversation-empty-phone")
        ask(page, "Print a very long line and a wide table " + LONG_WORD)
        expect(page.locator(".msg-final")).to_contain_text("30 columns", timeout=60_000)
        conversation_url = page.url
    remove_sandboxes()

    for size in SIZES:
        with screen(browser, size) as page:
            log_in(page, web, user)
            page.goto(conversation_url)
            expect(page.locator("#connection")).to_have_text("Connected")
            cell = page.get_by_role("region", name="Code cell 1")
            expect(cell.locator(".output-html table")).to_be_visible()
            page.locator("#transcript").evaluate("t => { t.scrollTop = 0; }")
            screenshot(page, f"layout-conversation-{size}-top")
            assert_fits(page, f"conversation ({size})")
            transcript = page.locator("#transcript").evaluate("t => [t.scrollWidth, t.clientWidth]")
            assert transcript[0] <= transcript[1], f"the transcript scrolls sideways: {transcript}"
            streams = cell.locator(".output-stream")
            assert_scrolls_inside(streams.first, "the 2,000-character line")
            assert_scrolls_inside(cell.locator(".output-html"), "the wide DataFrame")
            assert_scrolls_inside(cell.locator(".cell-code"), "the cell's code")
            answer = page.locator(".msg-final")
            assert_scrolls_inside(answer.locator("table"), "the wide Markdown table")
            assert_scrolls_inside(answer.locator("pre"), "the long code line")
            assert_fits(page, f"conversation, scrolled ({size})")
            screenshot(page, f"layout-conversation-{size}")
            assert_on_screen(page, page.get_by_role("button", name="Send"), "Send")
            assert_on_screen(page, page.locator(".btn-attach"), "attach")
            for control in ("#export-menu summary", "#files-menu summary", "#delete-form button"):
                assert_on_screen(page, page.locator(control), control)
            assert_on_screen(page, page.locator("#connection"), "connection status")
            assert_on_screen(page, page.locator("#conversation-title"), "title")
            # Renaming: the title opens a form that fits.
            page.locator("#conversation-title").click()
            assert_on_screen(page, page.get_by_role("button", name="Rename"), "Rename")
            assert_fits(page, f"conversation, renaming ({size})")
            screenshot(page, f"layout-conversation-{size}-rename")
            page.locator("#conversation-title").click()
            # The Files menu opens within the screen.
            page.locator("#files-menu summary").click()
            assert_on_screen(page, page.locator("#files-menu .files-pop"), "Files menu")
            assert_fits(page, f"conversation, Files open ({size})")
            screenshot(page, f"layout-conversation-{size}-files")
            page.locator("#files-menu summary").click()
            if size == "phone":
                check_drawer(page, "conversation")
                # The current conversation is the one focused in the drawer.
                menu_button(page).click()
                expect(page.locator(".conv-link.active")).to_be_focused()
                page.keyboard.press("Escape")
                expect(page.locator("#sidebar")).to_be_hidden()
            else:
                check_sidebar_on_desktop(page)
            # Typing a long message keeps Send on screen.
            page.get_by_label("Message").fill(LONG_WORD * 3 + "\n" + LONG_URL)
            assert_on_screen(page, page.get_by_role("button", name="Send"), "Send, long draft")
            assert_on_screen(page, page.locator(".btn-attach"), "attach, long draft")
            assert_fits(page, f"conversation, long draft ({size})")


def test_the_review_pages_fit(browser, web):
    owner = UserFactory(username="writer")
    conversation = analysis_conversation(owner, title=LONG_TITLE)
    execution = Execution.objects.get(conversation=conversation)
    Output.objects.create(
        execution=execution,
        conversation=conversation,
        index=9,
        output_type="stream",
        name="stdout",
        text="0123456789" * 200 + "\n",
    )
    reviewer = UserFactory(username="ruth", is_staff=True)
    ensure_reviewers_group()
    reviewer.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
    evaluation = EvaluationFactory(label=LONG_TITLE)
    # A task id as long as the field allows, and an answer that is one long word.
    EvaluationRunFactory(evaluation=evaluation, task=LONG_WORD[:100], conversation=conversation)
    EvaluationRunFactory(
        evaluation=evaluation, action_format="call", success=False, answer=LONG_URL
    )
    other = EvaluationFactory()
    pages = {
        "admin": "/admin/",
        "review-list": "/admin/chat/conversation/",
        "review-transcript": f"/review/c/{conversation.id}/",
        "usage": "/review/usage/?days=30",
        "evaluations": "/review/evaluations/",
        "evaluation": f"/review/evaluations/{evaluation.pk}/",
        "evaluation-compare": f"/review/evaluations/compare/?a={evaluation.pk}&b={other.pk}",
    }
    for size in SIZES:
        with screen(browser, size) as page:
            log_in(page, web, reviewer)
            for name, path in pages.items():
                page.goto(f"{web}{path}")
                assert_fits(page, f"{name} ({size})")
                screenshot(page, f"layout-{name}-{size}")
            page.goto(f"{web}/review/c/{conversation.id}/")
            long_line = page.locator(".output-stream").last
            assert_scrolls_inside(long_line, "the long line in the transcript")
            page.goto(f"{web}/review/usage/?days=30")
            expect(page.get_by_role("table", name="Usage by day and user")).to_be_visible()
