"""Review of conversation logs: who may see what, the audit trail, feedback,
flags and notes, the admin's filters, exports for training and the usage overview."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import nbformat
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from chat import exports, review
from chat.models import (
    AuditRecord,
    Conversation,
    Execution,
    Feedback,
    Message,
    Output,
    ReviewNote,
    Turn,
    WorkspaceFile,
)
from tests.factories import PNG, UserFactory, analysis_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(db: None) -> Any:
    user = UserFactory(username="reviewer", is_staff=True)
    user.groups.add(review.reviewers_group())
    return user


@pytest.fixture
def superuser(db: None) -> Any:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def analysis(owner: Any) -> Conversation:
    return analysis_conversation(owner)


def _who(name: str, request: Any) -> Any:
    return None if name == "anonymous" else request.getfixturevalue(name)


def _get(client: Any, user: Any, url: str) -> Any:
    if user is not None:
        client.force_login(user)
    return client.get(url)


# ---- who may see what ------------------------------------------------------------------

# (user fixture, transcript, export, admin conversation list, admin audit log, usage)
MATRIX = [
    ("anonymous", 302, 302, 302, 302, 302),
    ("other_user", 403, 403, 302, 302, 403),
    ("staff", 403, 403, 403, 403, 200),
    ("reviewer", 200, 200, 200, 403, 200),
    ("superuser", 200, 200, 200, 200, 200),
]


@pytest.mark.parametrize("who,transcript,export,changelist,audit,usage", MATRIX)
def test_permission_matrix(
    client: Any,
    request: Any,
    analysis: Conversation,
    who: str,
    transcript: int,
    export: int,
    changelist: int,
    audit: int,
    usage: int,
) -> None:
    user = _who(who, request)
    image = Output.objects.get(conversation=analysis, image_mime="image/png")
    urls = {
        "transcript": reverse("review:transcript", args=[analysis.id]),
        "image": reverse("review:image", args=[analysis.id, image.pk]),
        "export": reverse("review:export", args=[analysis.id, "jsonl"]),
        "changelist": reverse("admin:chat_conversation_changelist"),
        "messages": reverse("admin:chat_message_changelist"),
        "audit": reverse("admin:chat_auditrecord_changelist"),
        "usage": reverse("review:usage"),
    }
    got = {name: _get(client, user, url).status_code for name, url in urls.items()}
    assert got == {
        "transcript": transcript,
        "image": transcript,
        "export": export,
        "changelist": changelist,
        "messages": changelist,
        "audit": audit,
        "usage": usage,
    }
    # Only the permitted reads left a record, and each names the conversation.
    records = AuditRecord.objects.filter(action=AuditRecord.Action.TRANSCRIPT)
    assert records.count() == (1 if transcript == 200 else 0)
    if transcript == 200:
        assert records.get().conversations == [str(analysis.id)]
        assert records.get().user == user and records.get().actor == user.username


def test_the_admin_home_links_the_reviewer_to_the_work(client, reviewer, superuser, staff):
    client.force_login(reviewer)
    page = client.get(reverse("admin:index")).content.decode()
    assert "?errors=yes&amp;active=yesterday" in page and "flagged__exact=1" in page
    assert reverse("review:usage") in page
    assert reverse("admin:chat_auditrecord_changelist") not in page
    client.force_login(superuser)
    assert reverse("admin:chat_auditrecord_changelist") in client.get("/admin/").content.decode()
    client.force_login(staff)  # staff without the permission: usage only, no log tables
    page = client.get(reverse("admin:index")).content.decode()
    assert reverse("review:usage") in page and "errors=yes" not in page
    assert reverse("admin:chat_message_changelist") not in page


def test_the_model_view_permission_alone_shows_no_content(client, staff, analysis):
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_message", "view_conversation"])
    )
    client.force_login(staff)
    assert client.get(reverse("admin:chat_message_changelist")).status_code == 403
    assert client.get(reverse("review:transcript", args=[analysis.id])).status_code == 403


def test_owners_never_see_reviewer_pages_of_their_own_conversation(client, owner, analysis):
    client.force_login(owner)
    assert client.get(reverse("review:transcript", args=[analysis.id])).status_code == 403


# ---- the transcript -------------------------------------------------------------------


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


# ---- the audit trail -----------------------------------------------------------------


def test_admin_reads_and_searches_are_recorded(client, reviewer, analysis):
    client.force_login(reviewer)
    message = Message.objects.filter(conversation=analysis).first()
    assert message is not None
    client.get(reverse("admin:chat_message_change", args=[message.pk]))
    client.get(reverse("admin:chat_conversation_changelist"), {"q": "df.shape"})
    client.get(reverse("admin:chat_conversation_changelist"))  # no search: nothing to record
    rows = list(AuditRecord.objects.order_by("id").values("action", "conversations", "detail"))
    assert rows == [
        {
            "action": "log_row",
            "conversations": [str(analysis.id)],
            "detail": {"model": "message", "id": str(message.pk)},
        },
        {
            "action": "search",
            "conversations": [str(analysis.id)],
            "detail": {"model": "conversation", "query": "df.shape"},
        },
    ]


def test_the_conversation_admin_page_is_the_audited_transcript(client, reviewer, analysis):
    client.force_login(reviewer)
    response = client.get(reverse("admin:chat_conversation_change", args=[analysis.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("review:transcript", args=[analysis.id])


def test_nobody_can_change_or_delete_the_audit_log_or_the_logs(client, superuser, analysis):
    client.force_login(superuser)
    client.get(reverse("review:transcript", args=[analysis.id]))
    record = AuditRecord.objects.get()
    for url in (
        reverse("admin:chat_auditrecord_delete", args=[record.pk]),
        reverse("admin:chat_message_delete", args=[Message.objects.first().pk]),  # type: ignore[union-attr]
        reverse("admin:chat_conversation_delete", args=[analysis.pk]),
    ):
        assert client.post(url, {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.filter(pk=record.pk).exists()
    page = client.get(reverse("admin:chat_auditrecord_changelist")).content.decode()
    assert "root" in page and "transcript" in page


# ---- feedback --------------------------------------------------------------------------


def _rate(client: Any, conversation: Conversation, message: Message, body: Any) -> Any:
    return client.post(
        reverse("chat:feedback", args=[conversation.id, message.pk]),
        data=body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
    )


def test_an_owner_rates_an_answer_changes_and_clears_it(client, owner, analysis):
    answer = Message.objects.get(conversation=analysis, final=True)
    client.force_login(owner)
    response = _rate(client, analysis, answer, {"rating": -1, "comment": " Wrong axis "})
    assert response.status_code == 200
    assert response.json() == {"feedback": {"rating": -1, "comment": "Wrong axis"}}
    _rate(client, analysis, answer, {"rating": 1, "comment": ""})
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment, feedback.user) == (1, "", owner)
    page = client.get(reverse("chat:conversation", args=[analysis.id])).content.decode()
    assert f'"{answer.pk}": {{"rating": 1' in page  # the page starts with the rating shown
    assert _rate(client, analysis, answer, {"rating": None}).json() == {"feedback": None}
    assert not Feedback.objects.exists()


@pytest.mark.parametrize(
    "body,status,code",
    [
        ("not json", 400, "malformed"),
        ([1, 2], 400, "malformed"),
        ({"rating": 5}, 400, "invalid_rating"),
        ({"rating": True}, 400, "invalid_rating"),
        ({"rating": 1, "comment": "x" * 2001}, 400, "comment_too_long"),
    ],
)
def test_bad_feedback_is_refused_with_a_reason(client, owner, analysis, body, status, code):
    answer = Message.objects.get(conversation=analysis, final=True)
    client.force_login(owner)
    response = _rate(client, analysis, answer, body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert not Feedback.objects.exists()


def test_only_the_owner_rates_and_only_answers(client, owner, other_user, analysis):
    answer = Message.objects.get(conversation=analysis, final=True)
    question = Message.objects.get(conversation=analysis, role="user")
    client.force_login(other_user)
    assert _rate(client, analysis, answer, {"rating": 1}).status_code == 404
    client.force_login(owner)
    assert _rate(client, analysis, question, {"rating": 1}).status_code == 404
    assert not Feedback.objects.exists()


# ---- flags, notes and the reviewer's filters --------------------------------------------


def test_a_reviewer_flags_and_notes_without_touching_last_activity(client, reviewer, analysis):
    before = Conversation.objects.get(pk=analysis.pk).updated_at
    client.force_login(reviewer)
    client.post(reverse("review:flag", args=[analysis.id]), {"flagged": "1"})
    client.post(reverse("review:note", args=[analysis.id]), {"text": "Check the axis labels"})
    client.post(reverse("review:note", args=[analysis.id]), {"text": "   "})  # refused
    conversation = Conversation.objects.get(pk=analysis.pk)
    assert conversation.flagged and conversation.flagged_by == reviewer
    assert conversation.updated_at == before
    assert list(ReviewNote.objects.values_list("text", flat=True)) == ["Check the axis labels"]
    page = client.get(reverse("review:transcript", args=[analysis.id])).content.decode()
    assert "Check the axis labels" in page and "Remove flag" in page
    actions = list(AuditRecord.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["flag", "note", "transcript"]


def _conversations_listed(client: Any, **params: str) -> set[str]:
    response = client.get(reverse("admin:chat_conversation_changelist"), params)
    assert response.status_code == 200
    return {c.title for c in response.context["cl"].result_list}


def _backdate(conversation: Conversation, days: int) -> None:
    when = timezone.now() - timedelta(days=days)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
    Turn.objects.filter(conversation=conversation).update(created_at=when)


def test_a_reviewer_finds_yesterdays_conversations_with_errors(client, reviewer, owner):
    failing = analysis_conversation(owner, title="failing yesterday")
    Execution.objects.filter(conversation=failing).update(status="error")
    _backdate(failing, 1)
    clean = analysis_conversation(owner, title="clean yesterday")
    _backdate(clean, 1)
    today = analysis_conversation(owner, title="failing today")
    Turn.objects.filter(conversation=today).update(status="failed")
    old = analysis_conversation(owner, title="failing last week")
    Execution.objects.filter(conversation=old).update(status="timeout")
    _backdate(old, 6)
    client.force_login(reviewer)
    assert _conversations_listed(client, errors="yes", active="yesterday") == {"failing yesterday"}
    assert _conversations_listed(client, errors="yes") == {
        "failing yesterday",
        "failing today",
        "failing last week",
    }
    assert _conversations_listed(client, errors="no") == {"clean yesterday"}
    assert _conversations_listed(client, turn_status="failed") == {"failing today"}
    response = client.get(reverse("admin:chat_conversation_changelist"), {"errors": "yes"})
    row = next(c for c in response.context["cl"].result_list if c.title == "failing yesterday")
    assert (row.n_turns, row.n_executions, row.n_errors) == (1, 1, 1)


def test_rating_and_flag_filters(client, reviewer, owner):
    liked = analysis_conversation(owner, title="liked")
    disliked = analysis_conversation(owner, title="disliked")
    analysis_conversation(owner, title="unrated")
    for conversation, rating in ((liked, 1), (disliked, -1)):
        answer = Message.objects.get(conversation=conversation, final=True)
        review.do_rate(conversation, owner, answer.pk, rating, "")
    Conversation.objects.filter(pk=disliked.pk).update(flagged=True)
    client.force_login(reviewer)
    assert _conversations_listed(client, rating="up") == {"liked"}
    assert _conversations_listed(client, rating="down") == {"disliked"}
    assert _conversations_listed(client, rating="unrated") == {"unrated"}
    assert _conversations_listed(client, flagged__exact="1") == {"disliked"}
    assert _conversations_listed(client, q="df.shape") == {"liked", "disliked", "unrated"}


# ---- exports -------------------------------------------------------------------------------


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
    record = exports.training_record(analysis)
    assert record is not None
    exports.check_training_record(record)
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
    record = exports.training_record(analysis)
    assert record is not None and len(record["conversations"]) == 5
    # A conversation whose first turn failed has nothing to learn from.
    failed = analysis_conversation(owner, title="failed")
    Turn.objects.filter(conversation=failed).update(status="failed")
    assert exports.training_record(failed) is None


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
        exports.check_training_record(record)


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
    assert document["format"] == exports.JSON_FORMAT
    assert [c["title"] for c in document["conversations"]] == ["first", "second"]
    one = document["conversations"][0]
    assert one["owner"] == "owner" and len(one["turns"]) == 1 and len(one["messages"]) == 3
    cell = one["executions"][0]
    assert cell["code"] == "print(df.shape)\nplt.plot([1, 2])" and cell["duration"] == 0.4
    image = next(o for o in cell["outputs"] if o["image_mime"])
    import base64

    assert base64.b64decode(image["image_base64"]) == PNG

    archive = zipfile.ZipFile(io.BytesIO(run("export_ipynb").content))
    assert len(archive.namelist()) == 2
    for name in archive.namelist():
        nbformat.validate(nbformat.reads(archive.read(name).decode(), as_version=4))

    lines = run("export_jsonl").content.decode().splitlines()
    assert len(lines) == 2
    for line in lines:
        exports.check_training_record(json.loads(line))

    records = AuditRecord.objects.order_by("id")
    assert [r.action for r in records] == ["export_json", "export_ipynb", "export_jsonl"]
    assert all(sorted(r.conversations) == sorted(selected) and r.via == "admin" for r in records)


def test_export_actions_need_the_export_permission(client, owner, analysis):
    from django.contrib.auth.models import Permission

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
    assert response.content == data
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
    from django.contrib.auth.models import Permission

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
        review.do_rate(conversation, owner, answer.pk, rating, "")
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
    exports.check_training_record(json.loads(lines[0]))

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


# ---- usage overview ------------------------------------------------------------------------


def test_usage_counts_per_user_and_day(client, staff, owner, other_user):
    first = analysis_conversation(owner, title="a")
    Execution.objects.filter(conversation=first).update(status="error", duration=2.5)
    second = analysis_conversation(owner, title="b")
    Execution.objects.filter(conversation=second).update(status="timeout", duration=20.0)
    third = analysis_conversation(other_user, title="c")
    _backdate(third, 1)
    Execution.objects.filter(conversation=third).update(
        started_at=timezone.now() - timedelta(days=1)
    )
    client.force_login(staff)
    response = client.get(reverse("review:usage"), {"days": "7"})
    rows = {(r.username, r.day): r for r in response.context["rows"]}
    today = timezone.localdate()
    mine = rows[("owner", today)]
    assert (mine.turns, mine.executions, mine.errors, mine.timeouts) == (2, 2, 2, 1)
    assert mine.sandbox_seconds == pytest.approx(22.5)
    # the timed-out cell's own error output is not counted twice
    assert dict(mine.error_types) == {"KeyError": 1, "Timeout": 1}
    theirs = rows[("mallory", today - timedelta(days=1))]
    assert (theirs.turns, theirs.executions, theirs.errors) == (1, 1, 0)
    page = response.content.decode()
    assert "KeyError" in page and "Plot it" not in page  # counts, never content
    csv_text = client.get(reverse("review:usage"), {"days": "7", "format": "csv"}).content
    header, *lines = csv_text.decode().splitlines()
    assert header.startswith("day,user,turns,failed_turns,executions,errors,timeouts")
    assert f"{today},owner,2,0,2,2,1,22.5,KeyError (1); Timeout (1)" in lines
    only = client.get(reverse("review:usage"), {"days": "1", "user": str(other_user.pk)})
    assert only.context["rows"] == []
