"""Working with the code, in Chromium: Run on an answer's code block, edit and
re-run a failing cell, edit the last message and regenerate an answer. The
scripted model records every prompt, so the tests check what the model was
told: the user's own cells and their output, and never a superseded answer."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_chat_page import ask, start_conversation
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]


def prompt_text(body) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"])


def test_run_on_a_code_block_in_an_answer_runs_it_as_your_cell(page, web, model_server):
    model_server.push(
        Script(text="Try this:\n\n```python\nprint('answer is', 6 * 7)\n```\n\nIt prints a number.")
    )
    start_conversation(page, web, "runner")
    ask(page, "Show me some code, do not run it")
    answer = page.locator(".msg-final")
    expect(answer).to_contain_text("It prints a number.")
    run = answer.get_by_role("button", name="Run this code")
    expect(run).to_be_enabled()
    run.click()
    cell = page.get_by_role("region", name=re.compile(r"Code cell 1, run by you"))
    expect(cell).to_contain_text("Run by you")
    expect(cell.locator(".output-stream")).to_have_text("answer is 42\n", timeout=60_000)
    expect(cell.locator(".cell-status")).to_have_text("Done")
    screenshot(page, "20-run-from-answer")


def test_a_failing_cell_is_edited_rerun_and_the_model_is_told(page, web, model_server):
    model_server.push(
        Script(chunks=["Computing.\n<execute>\n", "print(totl)\n", "</execute>"]),
        Script(text="The code failed: `totl` is not defined."),
    )
    start_conversation(page, web, "editor")
    ask(page, "Add things up")
    first = page.get_by_role("region", name="Code cell 1")
    expect(first.locator(".output-error")).to_contain_text("NameError", timeout=60_000)
    expect(page.locator(".msg-final")).to_contain_text("is not defined")

    first.get_by_role("button", name="Edit cell 1 and run it again").click()
    editor = first.get_by_label("Code for a new cell, from cell 1")
    expect(editor).to_be_focused()
    editor.fill("total = sum(range(10))\nprint('fixed', total)")
    screenshot(page, "21-cell-editor")
    editor.press("Control+Enter")
    expect(editor).to_have_count(0)
    mine = page.get_by_role("region", name=re.compile(r"Code cell 2, run by you"))
    expect(mine.locator(".output-stream")).to_have_text("fixed 45\n", timeout=60_000)
    expect(mine.locator(".cell-status")).to_have_text("Done")
    expect(page.get_by_role("button", name="Send")).to_be_visible()

    model_server.push(Script(text="Your cell printed 45."))
    ask(page, "What did my cell print?")
    expect(page.locator(".msg-final").last).to_contain_text("Your cell printed 45.")
    told = prompt_text(model_server.requests[-1])
    assert "print('fixed', total)" in told
    assert "Execution Output:\nfixed 45" in told
    assert told.index("print('fixed', total)") < told.index("What did my cell print?")
    # The kernel is shared: the model's code would see `total` too.
    screenshot(page, "22-after-user-cell")


def test_the_last_message_is_edited_and_the_old_answer_is_not_sent(page, web, model_server):
    model_server.push(Script(text="Paris is the capital of Italy."))
    start_conversation(page, web, "reviser")
    ask(page, "What is the capital of Italy?")
    expect(page.locator(".msg-final")).to_contain_text("capital of Italy")

    composer = page.get_by_label("Message")
    composer.press("ArrowUp")  # an empty composer: Up edits the last message
    expect(composer).to_have_value("What is the capital of Italy?")
    expect(page.locator("#edit-banner")).to_contain_text("not undone")
    composer.fill("What is the capital of France?")
    model_server.push(Script(text="Paris is the capital of France."))
    composer.press("Enter")
    expect(page.locator(".msg-final:not(.superseded)")).to_contain_text("capital of France")
    old = page.locator(".msg.superseded")
    expect(old).to_have_count(2)
    expect(old.first).to_contain_text("no longer sent to the assistant")
    told = prompt_text(model_server.requests[-1])
    assert "What is the capital of France?" in told
    assert "Italy" not in told
    screenshot(page, "23-edited-message")

    # Escape leaves an edit without sending anything.
    composer.press("ArrowUp")
    expect(composer).to_have_value("What is the capital of France?")
    composer.press("Escape")
    expect(composer).to_have_value("")
    expect(page.locator("#edit-banner")).to_be_hidden()


def test_regenerate_gives_a_new_answer_and_keeps_the_old_one(page, web, model_server):
    model_server.push(Script(text="First try: 41."))
    start_conversation(page, web, "regenerator")
    ask(page, "Pick a number")
    expect(page.locator(".msg-final")).to_contain_text("First try")
    model_server.push(Script(text="Second try: 42."))
    page.get_by_role("button", name="Regenerate the last answer").click()
    expect(page.locator(".msg-final:not(.superseded)")).to_contain_text("Second try")
    expect(page.locator(".msg-final.superseded")).to_contain_text("First try")
    told = prompt_text(model_server.requests[-1])
    assert "Pick a number" in told and "First try" not in told
    expect(page.locator("#composer-hint")).to_contain_text("not undone")

    page.reload()
    expect(page.locator(".msg-final.superseded")).to_contain_text("First try")
    expect(page.get_by_role("button", name="Regenerate the last answer")).to_have_count(1)
    screenshot(page, "24-regenerated")


def test_run_is_refused_while_the_assistant_answers(page, web, model_server):
    model_server.push(
        Script(text="Here:\n\n```python\nprint(1)\n```\n\nDone."),
        Script(text="slow " * 80, delay=0.05),
    )
    start_conversation(page, web, "waiter")
    ask(page, "Code please")
    run = page.locator(".msg-final").get_by_role("button", name="Run this code")
    expect(run).to_be_enabled()
    ask(page, "Now talk slowly")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(run).to_be_disabled()
    expect(run).to_have_attribute("title", re.compile("finished answering"))
    expect(run).to_be_enabled(timeout=30_000)


def test_a_code_block_in_your_own_message_can_be_run(page, web, model_server):
    model_server.push(Script(text="It divides by zero."))
    start_conversation(page, web, "asker")
    composer = page.get_by_label("Message")
    composer.fill("Why does this fail?\n```python\nprint(1 / 0)\n```\nThanks <b>a lot</b>")
    composer.press("Enter")
    expect(page.locator(".msg-final")).to_contain_text("divides by zero")
    mine = page.locator(".msg-user")
    expect(mine.locator("pre.code")).to_have_text("print(1 / 0)")
    expect(mine).to_contain_text("Thanks <b>a lot</b>")  # shown as typed, not as HTML
    mine.get_by_role("button", name="Run this code").click()
    cell = page.get_by_role("region", name=re.compile(r"Code cell 1, run by you"))
    expect(cell.locator(".output-error")).to_contain_text("ZeroDivisionError", timeout=60_000)
    expect(cell.locator(".cell-status")).to_have_text("Error")
