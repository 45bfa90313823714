"""Which model wrote each reply, and the settings each turn ran with, are visible
wherever a conversation is read or exported: the transcript, the admin, the full
JSON, notebooks, Markdown and the training JSONL. The conversation's model key
alone ("default") cannot say which model answered once the configuration behind
the key changes."""

from __future__ import annotations

import json
from typing import Any

import nbformat
import pytest
from django.urls import reverse

from chat import exports
from chat.models import Conversation, Message, Turn
from review import datasets
from review.admin_filters import WriterFilter
from tests.factories import analysis_conversation

pytestmark = pytest.mark.django_db

SCRIPTED = {
    "model_name": "codeact-scripted",
    "endpoint": "127.0.0.1:8765",
    "action_format": "execute",
}
QWEN = {
    "model_name": "Qwen/Qwen2.5-7B-Instruct",
    "endpoint": "vllm.internal:8000",
    "action_format": "fence",
}
SETTINGS = {"temperature": 0.2, "max_tokens": 1024, "max_executions": 8}


def _recorded(conversation: Conversation, writer: dict[str, str] = SCRIPTED) -> Conversation:
    """The conversation as the worker now leaves it: each reply names its writer,
    each turn its settings."""
    Message.objects.filter(conversation=conversation, role="assistant").update(**writer)
    Turn.objects.filter(conversation=conversation).update(**SETTINGS)
    return conversation


def _ask_again(conversation: Conversation, writer: dict[str, str]) -> Turn:
    """A second answered turn, written by `writer`, with its own settings."""
    question = Message.objects.create(conversation=conversation, role="user", content="Again?")
    turn = Turn.objects.create(
        conversation=conversation,
        user_message=question,
        status="done",
        temperature=0.7,
        max_tokens=256,
        max_executions=3,
    )
    Message.objects.create(
        conversation=conversation, turn=turn, role="assistant", content="Yes.", final=True, **writer
    )
    return turn


@pytest.fixture
def recorded(owner: Any) -> Conversation:
    return _recorded(analysis_conversation(owner, title="Recorded"))


# ---- the transcript ------------------------------------------------------------------


def test_the_transcript_names_the_model_behind_the_key(client, reviewer, recorded):
    client.force_login(reviewer)
    page = client.get(reverse("review:transcript", args=[recorded.id])).content.decode()
    # The key stays, the model it stood for is named beside it.
    assert "model <code>default</code> (answered by <code>codeact-scripted</code>)" in page
    assert "model <code>default</code> (<code>codeact-scripted</code>)" in page  # the turn
    # The turn's settings, and each reply's writer, once per turn while it is the same.
    assert "temperature 0.2 · max tokens 1024 · max executions 8" in page
    writer = "codeact-scripted · 127.0.0.1:8765 · execute"
    assert page.count('<span class="reply-writer"') == 1 and writer in page
    assert "codeact-scripted · 127.0.0.1:8765 (2 replies)" in page  # the summary
    assert "not recorded" not in page


def test_the_transcript_shows_each_change_of_writer(client, reviewer, recorded):
    final = Message.objects.get(conversation=recorded, final=True)
    Message.objects.filter(pk=final.pk).update(**QWEN)  # another model finished the turn
    _ask_again(recorded, QWEN)
    client.force_login(reviewer)
    page = client.get(reverse("review:transcript", args=[recorded.id])).content.decode()
    assert page.count('<span class="reply-writer"') == 3  # two in turn 1, one in turn 2
    assert "Qwen/Qwen2.5-7B-Instruct · vllm.internal:8000 · fence" in page
    assert "(<code>codeact-scripted</code>, <code>Qwen/Qwen2.5-7B-Instruct</code>)" in page
    assert "temperature 0.7 · max tokens 256 · max executions 3" in page


def test_rows_from_before_say_they_were_not_recorded(client, reviewer, analysis):
    Message.objects.filter(conversation=analysis, role="assistant").update(action_format="")
    client.force_login(reviewer)
    page = client.get(reverse("review:transcript", args=[analysis.id])).content.decode()
    assert "model <code>default</code> (model name not recorded)" in page
    assert "model <code>default</code> (name not recorded)" in page
    assert "settings not recorded" in page
    assert '<span class="reply-writer" title="Model name · endpoint · action format">' in page
    assert ">model name not recorded</span>" in page
    assert "model name not recorded (2 replies)" in page


# ---- the admin ------------------------------------------------------------------------


def _filter_choices(response: Any) -> dict[str, list[str]]:
    changelist = response.context["cl"]
    return {
        str(spec.title): [str(c["display"]) for c in spec.choices(changelist)][1:]  # not "All"
        for spec in changelist.filter_specs
        if isinstance(spec, WriterFilter)
    }


def _listed(response: Any) -> set[Any]:
    return {row.pk for row in response.context["cl"].result_list}


def test_the_message_list_filters_by_each_writer_field(client, reviewer, recorded, owner):
    old = analysis_conversation(owner, title="Older")
    Message.objects.filter(conversation=old, role="assistant").update(action_format="")
    newer = analysis_conversation(owner, title="Newer")
    _recorded(newer, QWEN)
    client.force_login(reviewer)
    url = reverse("admin:chat_message_changelist")

    choices = _filter_choices(client.get(url))
    assert choices["model name"] == ["Qwen/Qwen2.5-7B-Instruct", "codeact-scripted", "Not recorded"]
    assert choices["endpoint"] == ["127.0.0.1:8765", "vllm.internal:8000", "Not recorded"]
    assert choices["action format"] == ["execute", "fence", "Not recorded"]

    def replies(conversation: Conversation) -> set[int]:
        rows = Message.objects.filter(conversation=conversation, role="assistant")
        return set(rows.values_list("pk", flat=True))

    assert _listed(client.get(url, {"model_name": "codeact-scripted"})) == replies(recorded)
    assert _listed(client.get(url, {"endpoint": "vllm.internal:8000"})) == replies(newer)
    assert _listed(client.get(url, {"action_format": "fence"})) == replies(newer)
    assert _listed(client.get(url, {"model_name": "(none)"})) == replies(old)
    page = client.get(url, {"model_name": "codeact-scripted"}).content.decode()
    assert "codeact-scripted · 127.0.0.1:8765 · execute" in page  # the Written by column


def test_the_conversation_list_filters_by_the_model_that_answered(
    client, reviewer, recorded, owner
):
    other = _recorded(analysis_conversation(owner, title="Other"), QWEN)
    both = _recorded(analysis_conversation(owner, title="Both"))
    _ask_again(both, QWEN)
    client.force_login(reviewer)
    url = reverse("admin:chat_conversation_changelist")

    choices = _filter_choices(client.get(url))
    assert choices["model name (any reply)"] == ["Qwen/Qwen2.5-7B-Instruct", "codeact-scripted"]
    assert choices["endpoint (any reply)"] == ["127.0.0.1:8765", "vllm.internal:8000"]
    assert choices["action format (any reply)"] == ["execute", "fence"]

    qwen = {"model_name": "Qwen/Qwen2.5-7B-Instruct"}
    assert _listed(client.get(url, qwen)) == {other.pk, both.pk}  # once each
    assert _listed(client.get(url, {"endpoint": "127.0.0.1:8765"})) == {recorded.pk, both.pk}
    assert _listed(client.get(url, {"action_format": "fence"})) == {other.pk, both.pk}
    assert _listed(client.get(url, {**qwen, "action_format": "execute"})) == {both.pk}


def test_the_turn_list_filters_and_shows_settings(client, reviewer, recorded):
    second = _ask_again(recorded, QWEN)
    client.force_login(reviewer)
    url = reverse("admin:chat_turn_changelist")
    response = client.get(url, {"model_name": "Qwen/Qwen2.5-7B-Instruct"})
    assert _listed(response) == {second.pk}
    assert "temperature 0.7, max tokens 256, max executions 3" in response.content.decode()
    assert _filter_choices(response)["endpoint (any reply)"] == [
        "127.0.0.1:8765",
        "vllm.internal:8000",
    ]
    # and by each setting in effect
    assert _listed(client.get(url, {"temperature": "0.7"})) == {second.pk}
    assert _listed(client.get(url, {"max_executions": "3"})) == {second.pk}


def test_change_views_show_the_fields_read_only(client, reviewer, recorded):
    reply = Message.objects.filter(conversation=recorded, role="assistant").first()
    turn = Turn.objects.get(conversation=recorded)
    client.force_login(reviewer)
    message_page = client.get(reverse("admin:chat_message_change", args=[reply.pk]))
    turn_page = client.get(reverse("admin:chat_turn_change", args=[turn.pk]))
    for response, fields in (
        (message_page, SCRIPTED),
        (turn_page, {k: str(v) for k, v in SETTINGS.items()}),
    ):
        html = response.content.decode()
        assert response.status_code == 200
        for name, value in fields.items():
            assert f"field-{name}" in html and value in html, name
            assert f'name="{name}"' not in html, name  # shown, not an input


# ---- exports --------------------------------------------------------------------------


def test_the_full_json_export_has_each_reply_writer_and_turn_settings(recorded):
    record = datasets.conversation_record(recorded)
    [turn] = record["turns"]
    assert {k: turn[k] for k in SETTINGS} == SETTINGS
    replies = [m for m in record["messages"] if m["role"] == "assistant"]
    assert [{k: m[k] for k in SCRIPTED} for m in replies] == [SCRIPTED, SCRIPTED]
    question = next(m for m in record["messages"] if m["role"] == "user")
    assert question["model_name"] == question["endpoint"] == ""  # not a reply


def test_the_reviewers_json_download_carries_them(client, reviewer, recorded):
    client.force_login(reviewer)
    response = client.get(reverse("review:export", args=[recorded.id, "json"]))
    [conversation] = json.loads(response.content)["conversations"]
    assert conversation["turns"][0]["max_executions"] == 8
    assert conversation["messages"][-1]["model_name"] == "codeact-scripted"


def test_notebooks_carry_them_in_metadata(client, owner, reviewer, recorded):
    client.force_login(owner)  # the owner's own export
    nb = nbformat.reads(
        client.get(reverse("chat:export_ipynb", args=[recorded.id])).content.decode(),
        as_version=4,
    )
    nbformat.validate(nb)
    assert nb.metadata["codeact"]["model"] == "default"
    assert nb.metadata["codeact"]["model_names"] == ["codeact-scripted"]
    written = [
        c.metadata["codeact"] for c in nb.cells if "model_name" in c.metadata.get("codeact", {})
    ]
    assert len(written) == 3  # the step's text, its code cell and the answer
    turn = Turn.objects.get(conversation=recorded)
    for metadata in written:
        assert {k: metadata[k] for k in SCRIPTED} == SCRIPTED
        assert {k: metadata[k] for k in SETTINGS} == SETTINGS
        assert metadata["turn"] == turn.pk and metadata["model"] == "default"
    code = next(c for c in nb.cells if c.cell_type == "code")
    assert code.metadata["codeact"]["origin"] == "agent"  # the existing keys stay
    assert nb.cells[2].source == "**Assistant:**\n\nLoading."  # the text is unchanged

    client.force_login(reviewer)  # a reviewer's notebook is the same notebook
    reviewed = json.loads(client.get(reverse("review:export", args=[recorded.id, "ipynb"])).content)
    assert reviewed["metadata"]["codeact"]["model_names"] == ["codeact-scripted"]


def test_markdown_names_the_writer_once_per_turn_and_on_each_change(client, owner, recorded):
    final = Message.objects.get(conversation=recorded, final=True)
    _ask_again(recorded, QWEN)
    client.force_login(owner)
    text = client.get(reverse("chat:export_md", args=[recorded.id])).content.decode()
    first = (
        "*Model `codeact-scripted` · endpoint `127.0.0.1:8765` · format `execute` · "
        "temperature 0.2 · max tokens 1024 · max executions 8*"
    )
    assert f"**Assistant:**\n\n{first}\n\nLoading." in text
    assert text.count("`codeact-scripted`") == 1  # the answer has the same writer
    second = (
        "*Model `Qwen/Qwen2.5-7B-Instruct` · endpoint `vllm.internal:8000` · format `fence` · "
        "temperature 0.7 · max tokens 256 · max executions 3*"
    )
    assert f"**Assistant:**\n\n{second}\n\nYes." in text

    Message.objects.filter(pk=final.pk).update(model_name="other-model")
    changed = exports.markdown(recorded)
    # A change within the turn is named, without repeating the turn's settings.
    assert "*Model `other-model` · endpoint `127.0.0.1:8765` · format `execute`*" in changed


def test_markdown_of_an_old_conversation_is_unchanged(owner, analysis):
    text = exports.markdown(analysis)
    assert "*Model" not in text and "not recorded" not in text
    assert "**Assistant:**\n\nLoading." in text


def test_the_training_jsonl_pairs_each_reply_with_its_writer(client, reviewer, recorded):
    _ask_again(recorded, QWEN)
    client.force_login(reviewer)
    response = client.get(reverse("review:export", args=[recorded.id, "jsonl"]))
    [line] = response.content.decode().splitlines()
    record = json.loads(line)
    datasets.check_training_record(record)
    assert record["model"] == "default"  # the existing keys stay
    assert record["model_names"] == ["codeact-scripted", "Qwen/Qwen2.5-7B-Instruct"]
    first, second = record["turns"]
    assert {k: first[k] for k in SETTINGS} == SETTINGS
    assert (second["temperature"], second["max_tokens"], second["max_executions"]) == (0.7, 256, 3)
    assert [r["message"] for r in first["replies"]] == [2, 4]
    assert [r["message"] for r in second["replies"]] == [6]
    for turn, writer in ((first, SCRIPTED), (second, QWEN)):
        for reply in turn["replies"]:
            assert record["conversations"][reply["message"]]["role"] == "assistant"
            assert {k: reply[k] for k in writer} == writer
    assert record["conversations"][6]["content"] == "Yes."


def test_the_training_jsonl_of_an_old_conversation_says_nothing_was_recorded(analysis):
    record = datasets.training_record(analysis)
    assert record is not None
    assert record["model_names"] == []
    [turn] = record["turns"]
    assert turn["temperature"] is None and turn["max_tokens"] is None
    assert [r["model_name"] for r in turn["replies"]] == ["", ""]
