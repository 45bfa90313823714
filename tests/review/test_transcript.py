"""The reviewer's transcript: every step with its details, and nothing a user or
the model wrote ever acts in a reviewer's browser."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from chat.models import (
    Execution,
    Message,
    Output,
)
from tests.factories import PNG, analysis_conversation

pytestmark = pytest.mark.django_db


def test_the_transcript_shows_every_step_with_its_audit_details(client, reviewer, analysis):
    step = Message.objects.get(conversation=analysis, role="assistant", final=False)
    step.usage = {"prompt_tokens": 321, "completion_tokens": 45}
    step.save()
    client.force_login(reviewer)
    page = client.get(reverse("review:transcript", args=[analysis.id])).content.decode()
    assert "Sales trend" in page and "Plot it" in page
    assert "In [3]" in page and 'class="cell-status status-ok"' in page
    assert "print</span>" in page  # the code, highlighted like the chat page
    assert "(12, 2)" in page and "KeyError: &#x27;x&#x27;" in page
    assert "\x1b" not in page  # tracebacks without terminal colour codes
    image = Output.objects.get(conversation=analysis, image_mime="image/png")
    assert reverse("review:image", args=[analysis.id, image.pk]) in page
    assert "321 prompt, 45 completion" in page
    assert "0.400 s" in page  # the execution's duration
    assert "Execution Output:" in page  # what the model was told
    response = client.get(reverse("review:image", args=[analysis.id, image.pk]))
    assert response.content == PNG and response["Content-Type"] == "image/png"


def test_html_and_ansi_in_logged_outputs_are_inert(client, reviewer, superuser, owner):
    conversation = analysis_conversation(owner, title="<b>bold</b> title")
    execution = Execution.objects.get(conversation=conversation)
    Output.objects.create(
        execution=execution,
        conversation=conversation,
        index=10,
        output_type="stream",
        name="stdout",
        text="<script>alert(1)</script>\x1b[31mred\x1b[0m <img src=x onerror=alert(2)>",
    )
    Output.objects.create(
        execution=execution,
        conversation=conversation,
        index=11,
        output_type="display_data",
        data={
            "text/html": '<table><tr><td onclick="alert(3)">1</td></tr></table>'
            "<script>alert(4)</script>",
            "text/plain": "df",
        },
    )
    Message.objects.filter(conversation=conversation, final=True).update(
        content='<img src=x onerror="alert(5)"> **done** <a href="javascript:alert(6)">x</a>'
    )
    client.force_login(superuser)
    pages = [
        client.get(reverse("review:transcript", args=[conversation.id])),
        client.get(reverse("admin:chat_output_changelist")),
        client.get(reverse("admin:chat_message_changelist")),
        client.get(reverse("admin:chat_execution_changelist")),
        client.get(reverse("admin:chat_conversation_changelist")),
        client.get(
            reverse(
                "admin:chat_output_change",
                args=[Output.objects.get(conversation=conversation, index=10).pk],
            )
        ),
    ]
    for response in pages:
        assert response.status_code == 200
        html = response.content.decode()
        path = response.request["PATH_INFO"]
        assert _live_markup(html) == [], path
        assert "<b>bold" not in html and "\x1b" not in html, path
    transcript = pages[0].content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in transcript  # shown as text
    assert "<td>1</td>" in transcript  # the table kept, its handler gone
    assert "<strong>done</strong>" in transcript


class _Markup(HTMLParser):
    """Collects what a browser would act on: handlers, script, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value}>")
            if tag == "img" and name == "src" and not (value or "").startswith("/"):
                self.found.append(f"<img src={value}>")

    def handle_data(self, data: str) -> None:
        if self.in_script and "alert" in data:
            self.found.append(f"<script>{data[:40]}")

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False


def _live_markup(html: str) -> list[str]:
    parser = _Markup()
    parser.feed(html)
    return parser.found
