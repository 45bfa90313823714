"""Exports for audit and training: the training record is what the model saw,
every export and download needs the export permission and is recorded."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from typing import Any

import nbformat
import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from chat.actions.feedback import do_rate
from chat.models import (
    AuditRecord,
    Conversation,
    Message,
    Turn,
    WorkspaceFile,
)
from review import datasets
from tests.factories import PNG, UserFactory, analysis_conversation

pytestmark = pytest.mark.django_db


def _second_turn(conversation: Conversation, status: str = "done") -> Turn:
    question = Message.objects.create(
        conversation=conversation, role="user", content="And the mean?"
    )
    turn = Turn.objects.create(conversation=conversation, user_message=question, status=status)
    Message.objects.create(
        conversation=conversation,
        turn=turn,
        role="assistant",
        content="The mean is 4.",
        final=status == "done",
    )
    return turn


def test_the_training_record_is_what_the_model_saw(owner, analysis):
    _second_turn(analysis)
    record = datasets.training_record(analysis)
    assert record is not None
    datasets.check_training_record(record)
    roles = [m["role"] for m in record["conversations"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    texts = [m["content"] for m in record["conversations"]]
    assert texts[0].startswith("You are a helpful assistant that can run Python code")
    assert texts[1] == "Plot it"
    assert texts[2].endswith("<execute>\nprint(df.shape)\nplt.plot([1, 2])\n</execute>")
    assert texts[3] == "Execution Output:\n(12, 2)\n[An image is already displayed to the user.]"
    assert texts[4] == "Sales rose. <solution>Up 7 per month</solution>"
    assert texts[5:] == ["And the mean?", "The mean is 4."]


def test_the_training_record_stops_before_an_unfinished_turn(owner, analysis):
    _second_turn(analysis, status="stopped")
    _second_turn(analysis)  # after a stopped turn: left out with it
    record = datasets.training_record(analysis)
    assert record is not None and len(record["conversations"]) == 5
    # A conversation whose first turn failed has nothing to learn from.
    failed = analysis_conversation(owner, title="failed")
    Turn.objects.filter(conversation=failed).update(status="failed")
    assert datasets.training_record(failed) is None


BAD_RECORDS = [
    ([], "a system prompt"),
    ([("user", "q"), ("assistant", "a"), ("user", "b")], "system prompt"),
    ([("system", "s"), ("assistant", "a"), ("user", "q")], "expected 'user'"),
    ([("system", "s"), ("user", "q"), ("user", "q2"), ("assistant", "a")], "expected 'assistant'"),
    ([("system", "s"), ("user", "q"), ("assistant", "<execute>1</execute>")], "not followed"),
    (
        [("system", "s"), ("user", "q"), ("assistant", "<execute>1</execute>"), ("user", "hi"),
         ("assistant", "a")],
        "not followed",
    ),
    (
        [("system", "s"), ("user", "q"), ("assistant", "a"), ("user", "Execution Output:\n1"),
         ("assistant", "b")],
        "no code before it",
    ),
    ([("system", "s"), ("user", "q"), ("assistant", "a"), ("user", "more")], "end with"),
]  # fmt: skip


@pytest.mark.parametrize("turns,reason", BAD_RECORDS)
def test_malformed_training_records_are_rejected(turns, reason):
    record = {"conversations": [{"role": r, "content": c} for r, c in turns]}
    with pytest.raises(ValueError, match=reason):
        datasets.check_training_record(record)


def test_admin_actions_export_json_notebooks_and_jsonl(client, reviewer, owner):
    first = analysis_conversation(owner, title="first")
    second = analysis_conversation(owner, title="second")
    client.force_login(reviewer)
    url = reverse("admin:chat_conversation_changelist")
    selected = [str(first.pk), str(second.pk)]

    def run(action: str) -> Any:
        response = client.post(url, {"action": action, "_selected_action": selected})
        assert response.status_code == 200, response.content[:300]
        assert response["Content-Disposition"].startswith("attachment;")
        return response

    document = json.loads(run("export_json").content)
    assert document["format"] == datasets.JSON_FORMAT
    assert [c["title"] for c in document["conversations"]] == ["first", "second"]
    one = document["conversations"][0]
    assert one["owner"] == "owner" and len(one["turns"]) == 1 and len(one["messages"]) == 3
    cell = one["executions"][0]
    assert cell["code"] == "print(df.shape)\nplt.plot([1, 2])" and cell["duration"] == 0.4
    image = next(o for o in cell["outputs"] if o["image_mime"])
    assert base64.b64decode(image["image_base64"]) == PNG

    archive = zipfile.ZipFile(io.BytesIO(run("export_ipynb").content))
    assert len(archive.namelist()) == 2
    for name in archive.namelist():
        nbformat.validate(nbformat.reads(archive.read(name).decode(), as_version=4))

    lines = run("export_jsonl").content.decode().splitlines()
    assert len(lines) == 2
    for line in lines:
        datasets.check_training_record(json.loads(line))

    records = AuditRecord.objects.order_by("id")
    assert [r.action for r in records] == ["export_json", "export_ipynb", "export_jsonl"]
    assert all(sorted(r.conversations) == sorted(selected) and r.via == "admin" for r in records)


def test_export_actions_need_the_export_permission(client, owner, analysis):
    only_review = UserFactory(username="looker", is_staff=True)
    only_review.user_permissions.add(Permission.objects.get(codename="review_conversation"))
    client.force_login(only_review)
    url = reverse("admin:chat_conversation_changelist")
    page = client.get(url).content.decode()
    assert "export_jsonl" not in page  # the action is not offered
    response = client.post(url, {"action": "export_jsonl", "_selected_action": [str(analysis.pk)]})
    assert "attachment" not in response.get("Content-Disposition", "")
    assert client.get(reverse("review:export", args=[analysis.id, "json"])).status_code == 403
    assert not AuditRecord.objects.filter(action__startswith="export").exists()


def _workspace_file(conversation: Conversation, path: str, data: bytes) -> WorkspaceFile:
    return WorkspaceFile.objects.create(
        conversation=conversation,
        path=path,
        origin=WorkspaceFile.Origin.GENERATED,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content=data,
    )


def test_an_exporter_downloads_a_workspace_file_and_it_is_recorded(
    client, reviewer, owner, analysis
):
    data = b"month,total\n2026-01,10\n\x00\xff"
    made = _workspace_file(analysis, "out/trend.csv", data)
    url = reverse("review:file", args=[analysis.id, made.pk])
    client.force_login(reviewer)
    page = client.get(reverse("review:transcript", args=[analysis.id])).content.decode()
    assert f'href="{url}"' in page

    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response) == data
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="trend.csv"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"]
    record = AuditRecord.objects.get(action=AuditRecord.Action.DOWNLOAD_FILE)
    assert record.user == reviewer and record.via == "web"
    assert record.conversations == [str(analysis.id)]
    assert record.detail == {"file": "out/trend.csv", "size": len(data), "sha256": made.sha256}

    # A file of another conversation, asked for under this one's address: not found.
    elsewhere = _workspace_file(analysis_conversation(owner, "Other"), "secret.txt", b"x")
    assert client.get(reverse("review:file", args=[analysis.id, elsewhere.pk])).status_code == 404
    assert AuditRecord.objects.filter(action=AuditRecord.Action.DOWNLOAD_FILE).count() == 1


def test_workspace_files_need_the_export_permission(client, owner, other_user, analysis):
    made = _workspace_file(analysis, "data.csv", b"a,b\n1,2\n")
    url = reverse("review:file", args=[analysis.id, made.pk])
    only_review = UserFactory(username="looker", is_staff=True)
    only_review.user_permissions.add(Permission.objects.get(codename="review_conversation"))
    client.force_login(only_review)
    page = client.get(reverse("review:transcript", args=[analysis.id])).content.decode()
    assert "<code>data.csv</code>" in page and url not in page  # listed, not offered
    assert client.get(url).status_code == 403
    for who in (owner, other_user):  # the owner has their own download, not this one
        client.force_login(who)
        assert client.get(url).status_code == 403
    client.logout()
    assert client.get(url).status_code == 302
    assert not AuditRecord.objects.filter(action=AuditRecord.Action.DOWNLOAD_FILE).exists()


def test_the_export_command_filters_by_rating_and_flag(owner, tmp_path):
    liked = analysis_conversation(owner, title="liked")
    liked_flagged = analysis_conversation(owner, title="liked and flagged")
    disliked = analysis_conversation(owner, title="disliked")
    for conversation, rating in ((liked, 1), (liked_flagged, 1), (disliked, -1)):
        answer = Message.objects.get(conversation=conversation, final=True)
        do_rate(conversation, owner, answer.pk, rating, "")
    Conversation.objects.filter(pk=liked_flagged.pk).update(flagged=True)

    out = tmp_path / "train.jsonl"
    call_command("export_conversations", "--format", "jsonl", "--rating", "up", "-o", str(out))
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted([str(liked.id), str(liked_flagged.id)])

    call_command(
        "export_conversations", "--format", "jsonl", "--rating", "up", "--not-flagged",
        "-o", str(out), "--actor", "nightly-job",
    )  # fmt: skip
    lines = out.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [str(liked.id)]
    datasets.check_training_record(json.loads(lines[0]))

    folder = tmp_path / "notebooks"
    call_command("export_conversations", "--format", "ipynb", "--flagged", "-o", str(folder))
    notebooks = list(folder.iterdir())
    assert len(notebooks) == 1
    nbformat.validate(nbformat.reads(notebooks[0].read_text(), as_version=4))

    record = AuditRecord.objects.filter(actor="nightly-job").get()
    assert record.action == "export_jsonl" and record.via == "command"
    assert record.conversations == [str(liked.id)]
    assert record.detail["filters"] == {"not_flagged": "True", "rating": "up"}
    assert AuditRecord.objects.count() == 3
