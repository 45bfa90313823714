"""A conversation's files in its real sandbox: deleted files leave the sandbox,
and files that do not fit a new sandbox are reported, not fatal."""

from __future__ import annotations

import hashlib
import os
from unittest import mock

import pytest

from chat.actions import files
from chat.models import FileDeletion, SandboxRecord, WorkspaceFile
from chat.worker import pool
from sandbox.docker_backend import DockerSandbox
from tests.factories import ConversationFactory
from tests.support.executor_run import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
MiB = 1 << 20


@pytest.fixture(autouse=True)
def cleanup(settings):
    settings.CODEACT_POOL_SIZE = 0
    with mock.patch("chat.actions.messages.send_turn"):
        yield
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")


def stored(conversation, path, data):
    return WorkspaceFile.objects.create(
        conversation=conversation, path=path, origin="upload", size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), content=data,
    )  # fmt: skip


def test_files_that_do_not_fit_a_new_sandbox_are_reported_and_the_code_runs(owner, settings):
    small = {"workspace_bytes": 16 * MiB}
    settings.CODEACT_SANDBOX_LIMITS = settings.CODEACT_SANDBOX_LIMITS | small
    conversation = ConversationFactory(owner=owner)
    blobs = {name: os.urandom(7 * MiB) for name in ("a.bin", "b.bin", "c.bin")}
    for name, data in blobs.items():
        stored(conversation, name, data)

    run = Run(conversation)
    executed, text = run.execute("import os\nprint(sorted(os.listdir('/workspace')))")
    assert executed.result.status == "ok", executed.result
    listed = eval(text)
    assert len(listed) == 2
    (left_out,) = set(blobs) - set(listed)
    assert [code for code, _ in run.notices] == ["files_not_restored"]
    assert left_out in run.notices[0][1]
    assert any(left_out in note for note in executed.notes)
    # Nothing part-written was kept in place of the stored copy.
    assert bytes(WorkspaceFile.objects.get(path=left_out).content) == blobs[left_out]

    again, _ = run.execute("print('still fine')")
    assert again.result.status == "ok"
    assert len(run.notices) == 1  # told once per turn


def test_a_deleted_file_leaves_the_sandbox_and_is_not_captured_again(owner):
    conversation = ConversationFactory(owner=owner)
    file = stored(conversation, "old.csv", b"a,b\n1,2\n")
    run = Run(conversation)
    _, text = run.execute("print(open('old.csv').read().splitlines()[0])")
    assert text == "a,b\n"
    run.finish()

    files.do_delete_file(conversation, file.pk)
    assert FileDeletion.objects.filter(conversation=conversation).count() == 1

    run = Run(conversation)
    executed, text = run.execute("import os\nprint(os.path.exists('old.csv'))")
    assert executed.result.status == "ok" and text == "False\n"
    assert not executed.result.state_lost  # the same sandbox, its copy removed
    assert not WorkspaceFile.objects.filter(conversation=conversation).exists()
    assert not FileDeletion.objects.exists()


def test_a_stream_lost_while_files_go_in_is_attached_again_before_the_cell(owner):
    """The soak saw it once in 5,000 turns: the sandbox's attach stream ended while
    an upload was being put in, and the turn failed ("The sandbox has stopped").
    No code had run yet, so the executor attaches again (the kernel is still
    there: variables kept) and runs the cell."""
    conversation = ConversationFactory(owner=owner)
    first = Run(conversation)
    executed, _ = first.execute("kept = 41")
    assert executed.result.status == "ok"
    first.finish()
    stored(conversation, "sales.csv", b"month,sales\n2026-01,110\n")

    run = Run(conversation)
    real = DockerSandbox.put_file
    cut: list[str] = []

    def put_file_on_a_dying_stream(self, path, data):
        if not cut:
            cut.append(path)
            self._conn.close()  # the stream ends under the transfer
        return real(self, path, data)

    with mock.patch.object(DockerSandbox, "put_file", put_file_on_a_dying_stream):
        executed, text = run.execute("print(kept + 1, open('sales.csv').read().count(','))")
    assert cut == ["sales.csv"]
    assert executed.result.status == "ok", executed.result
    assert text == "42 2\n"
    assert run.notices == []  # nothing was lost: not a new session
    run.finish()
