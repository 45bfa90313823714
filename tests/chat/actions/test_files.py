"""Uploads and downloads: limits, names, ownership and safe responses."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat.actions import files
from chat.models import WorkspaceFile
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner)


def post_files(client, conversation, *items):
    uploads = [SimpleUploadedFile(name, data) for name, data in items]
    return client.post(reverse("chat:upload", args=[conversation.id]), {"file": uploads})


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("sales.csv", "sales.csv"),
        ("Sales Data 2026.xlsx", "Sales_Data_2026.xlsx"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.csv", "report.csv"),
        (".bashrc", "bashrc"),
        ("données.csv", "donnees.csv"),
        ("数据.csv", "upload.csv"),
        ("", "upload"),
        ("a" * 300 + ".csv", "a" * 80 + ".csv"),
    ],
)
def test_it_makes_a_safe_name(sent, stored):
    assert files.safe_name(sent) == stored


def test_it_stores_uploads_under_unused_names(client, owner, conversation):
    client.force_login(owner)
    response = post_files(client, conversation, ("data.csv", b"a,b\n1,2\n"), ("data.csv", b"x"))
    assert response.status_code == 201
    assert [f["path"] for f in response.json()["files"]] == ["data.csv", "data-2.csv"]
    stored = WorkspaceFile.objects.get(conversation=conversation, path="data.csv")
    assert bytes(stored.content) == b"a,b\n1,2\n" and stored.origin == "upload"
    assert stored.uploaded_by == owner and stored.seq > 0


def test_it_refuses_a_file_over_the_size_limit(client, owner, conversation, settings):
    settings.CODEACT_UPLOAD_MAX_MB = 1
    client.force_login(owner)
    response = post_files(client, conversation, ("big.csv", b"x" * (files.MiB + 1)))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert "limited to 1 MB" in response.json()["error"]["message"]
    assert not WorkspaceFile.objects.exists()


def test_it_refuses_a_body_too_large_before_reading_it(client, owner, conversation, settings):
    settings.CODEACT_UPLOAD_MAX_MB = 1
    settings.CODEACT_UPLOADS_PER_REQUEST = 1
    client.force_login(owner)
    response = client.post(
        reverse("chat:upload", args=[conversation.id]),
        data=b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(10 * files.MiB),
    )
    assert response.status_code == 413


def test_it_keeps_to_the_file_count_of_a_conversation(client, owner, conversation, settings):
    settings.CODEACT_FILES_PER_CONVERSATION = 2
    client.force_login(owner)
    post_files(client, conversation, ("a.csv", b"1"), ("b.csv", b"2"))
    response = post_files(client, conversation, ("c.csv", b"3"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_files"
    assert WorkspaceFile.objects.count() == 2


def test_it_asks_for_a_file(client, owner, conversation):
    client.force_login(owner)
    response = client.post(reverse("chat:upload", args=[conversation.id]))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_file"


def test_only_the_owner_uploads_and_downloads(client, owner, other_user, conversation):
    client.force_login(owner)
    post_files(client, conversation, ("mine.csv", b"secret"))
    file = WorkspaceFile.objects.get()
    url = reverse("chat:download", args=[conversation.id, file.pk])

    got = client.get(url)
    assert got.status_code == 200 and b"".join(got) == b"secret"
    assert got["Content-Disposition"] == 'attachment; filename="mine.csv"'
    assert got["Content-Type"] == "application/octet-stream"
    assert got["X-Content-Type-Options"] == "nosniff"

    client.force_login(other_user)
    assert client.get(url).status_code == 404
    assert post_files(client, conversation, ("x.csv", b"x")).status_code == 404
    assert WorkspaceFile.objects.count() == 1

    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def _execution(conversation):
    from chat.models import Execution, Message, Turn

    message = Message.objects.create(conversation=conversation, role="user", content="go")
    turn = Turn.objects.create(conversation=conversation, user_message=message, status="done")
    return Execution.objects.create(
        conversation=conversation, turn=turn, message=message, code="", number=1
    )


def _sandbox_id():
    from chat.models import SandboxRecord

    return SandboxRecord.objects.create(container_id="held-by-test", image="test").pk


def test_it_keeps_the_room_limit_when_code_overwrites_a_file(client, owner, conversation, settings):
    settings.CODEACT_FILES_MB_PER_CONVERSATION = 1
    client.force_login(owner)
    post_files(client, conversation, ("data.csv", b"small"))
    execution, box = _execution(conversation), _sandbox_id()
    with pytest.raises(files.ActionError) as refused:
        files.do_capture_file(execution, "data.csv", b"x" * (files.MiB + 1), 1, box)
    assert refused.value.code == "files_full"
    assert bytes(WorkspaceFile.objects.get(path="data.csv").content) == b"small"
    files.do_capture_file(execution, "data.csv", b"bigger but fits", 2, box)  # within room: kept
    assert bytes(WorkspaceFile.objects.get(path="data.csv").content) == b"bigger but fits"


def test_it_keeps_no_capture_over_the_capture_limit(owner, conversation, settings):
    settings.CODEACT_CAPTURE_MAX_MB = 1
    with pytest.raises(files.ActionError) as refused:
        files.do_capture_file(_execution(conversation), "grown.bin", b"x" * (files.MiB + 1), 1, 0)
    assert refused.value.code == "file_too_large"
    assert not WorkspaceFile.objects.exists()


def test_it_reads_a_stored_file_a_piece_at_a_time(client, owner, conversation):
    client.force_login(owner)
    data = bytes(range(256)) * 40
    post_files(client, conversation, ("blob.bin", data))
    file = WorkspaceFile.objects.get()
    pieces = list(files.content_chunks(file.pk, size=1000))
    assert [len(p) for p in pieces] == [1000] * 10 + [240]
    assert b"".join(pieces) == data


def delete(client, conversation, file_id):
    return client.post(reverse("chat:delete_file", args=[conversation.id, file_id]))


def test_the_owner_deletes_a_file(client, owner, other_user, conversation):
    client.force_login(owner)
    post_files(client, conversation, ("old.csv", b"a,b"))
    file = WorkspaceFile.objects.get()

    client.force_login(other_user)
    assert delete(client, conversation, file.pk).status_code == 404
    assert WorkspaceFile.objects.exists()

    client.force_login(owner)
    response = delete(client, conversation, file.pk)
    assert response.status_code == 200 and response.json() == {"deleted": file.pk}
    assert not WorkspaceFile.objects.exists()
    assert client.get(reverse("chat:download", args=[conversation.id, file.pk])).status_code == 404
    again = delete(client, conversation, file.pk)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def test_a_file_is_not_deleted_while_an_answer_runs(client, owner, conversation):
    from chat.actions import messages

    client.force_login(owner)
    post_files(client, conversation, ("in-use.csv", b"a,b"))
    file = WorkspaceFile.objects.get()
    messages.do_send_user_message(conversation, "analyse in-use.csv")  # queued: a turn is active
    response = delete(client, conversation, file.pk)
    assert response.status_code == 409 and response.json()["error"]["code"] == "busy"
    assert WorkspaceFile.objects.exists()


def test_files_the_code_writes_count_against_the_owners_stored_quota(owner, settings):
    settings.CODEACT_QUOTA_STORED_MB = 1
    first, second = ConversationFactory(owner=owner), ConversationFactory(owner=owner)
    files.do_capture_file(_execution(first), "a.bin", b"x" * (files.MiB // 2), 1, _sandbox_id())
    with pytest.raises(files.ActionError) as refused:
        files.do_capture_file(_execution(second), "b.bin", b"y" * (files.MiB // 2 + 1), 1, None)
    assert refused.value.code == "quota_stored_bytes"
