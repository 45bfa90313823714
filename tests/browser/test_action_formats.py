"""The bundled-model path, in Chromium: a model that writes its code as a
```python block (as the bundled SmolLM2 does, and general chat models) gets it
run as a cell; the page shows the reply without the block, the cell's output,
and the model's answer."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from chat.models import Conversation
from tests.browser.conftest import screenshot
from tests.browser.test_chat_page import ask, remove_sandboxes, start_conversation
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]

CODE = "import statistics\nprint('mean:', statistics.mean([3, 5, 10]))"


def wait_for_model(key: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Conversation.objects.exclude(model=key).exists():
        assert time.monotonic() < deadline, f"the conversation did not switch to {key}"
        time.sleep(0.05)


def test_a_model_that_writes_python_fences_gets_them_run(page, web, model_server):
    model_server.push(
        # Nothing stops the server after the block: the invented output is dropped.
        Script(
            chunks=[
                "I will compute it in Python.\n\n",
                "```python\n",
                *(line + "\n" for line in CODE.splitlines()),
                "```\n",
                "Execution Output:\nmean: 99\n",
            ],
            delay=0.05,
        ),
        Script(text="The mean of 3, 5 and 10 is **6**."),
    )
    start_conversation(page, web, "fencer")
    page.get_by_label("Model").select_option(label="Scripted (python fences)")
    wait_for_model("fenced")

    ask(page, "What is the mean of 3, 5 and 10?")
    cell = page.get_by_role("region", name="Code cell 1")
    expect(cell).to_contain_text("statistics.mean", timeout=20_000)
    expect(cell.locator(".output-stream")).to_have_text("mean: 6\n", timeout=60_000)
    expect(cell.locator(".cell-status")).to_have_text("Done")
    answer = page.locator(".msg-final")
    expect(answer).to_contain_text("The mean of 3, 5 and 10 is 6.", timeout=10_000)
    expect(answer.locator("strong")).to_have_text("6")

    transcript = page.get_by_role("log", name="Conversation")
    step = transcript.locator(".msg-assistant").first
    expect(step).to_contain_text("I will compute it in Python.")
    expect(step.locator("pre")).to_have_count(0)  # the cell shows the code, not the reply
    expect(transcript).not_to_contain_text("Execution Output")
    expect(transcript).not_to_contain_text("mean: 99")
    screenshot(page, "30-python-fence-model")

    page.reload()
    expect(transcript.get_by_role("region", name="Code cell 1")).to_contain_text("mean: 6")
    expect(transcript.locator(".msg-assistant").first).to_contain_text("compute it in Python")
    expect(transcript.locator(".msg-assistant").first.locator("pre")).to_have_count(0)
    expect(transcript.locator(".msg-final")).to_contain_text("is 6.")

    fenced, answered = model_server.requests
    assert "stop" not in fenced and "tools" not in fenced
    assert "Markdown code block marked python" in fenced["messages"][0]["content"]
    assert answered["messages"][-1] == {"role": "user", "content": "Execution Output:\nmean: 6"}
    remove_sandboxes()
