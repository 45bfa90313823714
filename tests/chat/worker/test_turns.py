"""CodeAct turns end to end: the real worker runs the scripted model's code in a
real sandbox; PostgreSQL rows and websocket frames are both checked."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.test import Client
from django.utils import timezone

from chat import tasks
from chat.actions import turns
from chat.agent import codeact
from chat.models import Execution, Message, Output, SandboxRecord, Turn, WorkspaceFile
from chat.worker import pool
from review import datasets
from tests.conftest import open_socket
from tests.factories import ConversationFactory
from tests.support.processes import start_worker
from tests.support.scripted_model import Script

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.usefixtures("remove_sandboxes"),
]

db = database_sync_to_async


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner, title="Analysis")


def code(source: str, before: str = "") -> Script:
    """A model reply that runs `source` (the server cuts it at the stop sequence)."""
    return Script(text=f"{before}<execute>\n{source}\n</execute>\nExecution Output: invented")


async def ask(sock, text, timeout=40.0):
    await sock.send({"type": "user_message", "text": text})
    return await sock.turn_finished(timeout)


def frames_of(sock, kind):
    return [f for f in sock.frames if f["type"] == kind]


def executions_of(conversation):
    return list(Execution.objects.filter(conversation=conversation).order_by("id"))


def outputs_of(execution):
    return list(Output.objects.filter(execution=execution).order_by("index"))


async def test_a_plain_answer_runs_no_code(worker, model_server, owner, conversation):
    model_server.push(Script(text="Paris is the capital of France."))
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Capital of France?")
    assert finished["turn"]["status"] == "done"
    reply = await db(Message.objects.get)(conversation=conversation, role="assistant")
    assert reply.final and reply.content == "Paris is the capital of France."
    assert await db(executions_of)(conversation) == []
    assert not await db(SandboxRecord.objects.filter(conversation=conversation).exists)()
    assert model_server.requests[0]["stop"] == ["</execute>"]


async def test_an_error_is_fixed_by_the_next_action(worker, model_server, owner, conversation):
    model_server.push(
        code("print(undefined_total)", before="Let me compute it.\n"),
        code("total = sum(range(10))\nprint(total)"),
        Script(text="The total is 45."),
    )
    async with open_socket(owner, conversation.id) as sock:
        await sock.receive()  # hello
        finished = await ask(sock, "Sum 0..9 in Python")
    assert finished["turn"]["status"] == "done"

    first, second = await db(executions_of)(conversation)
    assert (first.number, first.status) == (1, "error")
    assert (second.number, second.status, second.code) == (
        2,
        "ok",
        "total = sum(range(10))\nprint(total)",
    )
    error = (await db(outputs_of)(first))[0]
    assert error.output_type == "error" and error.data["ename"] == "NameError"
    assert [o.text for o in await db(outputs_of)(second)] == ["45\n"]

    # the model saw each observation, as a user message, in the CodeAct format
    observed = model_server.requests[1]["messages"][-1]
    assert observed["role"] == "user"
    assert observed["content"].startswith("Execution Output:\n")
    assert "NameError" in observed["content"] and "\x1b[" not in observed["content"]
    assert model_server.requests[2]["messages"][-1]["content"] == "Execution Output:\n45"
    assert model_server.requests[2]["messages"][-2] == {
        "role": "assistant",
        "content": "<execute>\ntotal = sum(range(10))\nprint(total)\n</execute>",
    }
    assert first.observation == observed["content"]

    # the replies: two steps that ran code (cut after their action), then the answer
    replies = await db(list)(Message.objects.filter(conversation=conversation, role="assistant"))
    assert [r.final for r in replies] == [False, False, True]
    assert replies[0].content == "Let me compute it.\n<execute>\nprint(undefined_total)\n</execute>"
    assert replies[0].usage == {"prompt_tokens": 11, "completion_tokens": 7}
    # frames: each execution announced running, then finished; its output in between
    states = [
        (f["execution"]["number"], f["execution"]["status"]) for f in frames_of(sock, "execution")
    ]
    assert states == [(1, "running"), (1, "error"), (2, "running"), (2, "ok")]
    seqs = [f["seq"] for f in sock.frames if "seq" in f]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


async def test_variables_live_on_into_the_next_turn(worker, model_server, owner, conversation):
    model_server.push(
        code("rate = 0.07\nprincipal = 1000"),
        Script(text="Stored."),
        code("print(round(principal * (1 + rate) ** 2, 2))"),
        Script(text="1144.9"),
    )
    async with open_socket(owner, conversation.id) as sock:
        await ask(sock, "Remember a rate of 7% on 1000.")
        finished = await ask(sock, "What after two years?")
    assert finished["turn"]["status"] == "done"
    *_, last = await db(executions_of)(conversation)
    assert [o.text for o in await db(outputs_of)(last)] == ["1144.9\n"]
    # the second turn's prompt carries the first turn's action and observation
    history = model_server.requests[2]["messages"]
    assert {
        "role": "user",
        "content": "Execution Output:\n" + "[Code executed successfully with no output.]",
    } in history

    # the training export is exactly what the model was sent, then its answer
    record = await db(datasets.training_record)(conversation)
    datasets.check_training_record(record)
    last_prompt = model_server.requests[-1]["messages"]
    assert record["conversations"] == [*last_prompt, {"role": "assistant", "content": "1144.9"}]


async def test_a_plot_arrives_as_a_png(worker, model_server, owner, other_user, conversation):
    model_server.push(
        code("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()"),
        Script(text="Here is the plot."),
    )
    async with open_socket(owner, conversation.id) as sock:
        await ask(sock, "Plot 1, 3, 2")
    (execution,) = await db(executions_of)(conversation)
    (image,) = await db(outputs_of)(execution)
    assert image.output_type == "display_data" and image.image_mime == "image/png"
    assert bytes(image.image).startswith(b"\x89PNG\r\n\x1a\n")
    assert "image/png" not in image.data  # the bytes live in their own column
    frame = next(f for f in frames_of(sock, "output") if f["output"]["id"] == image.pk)
    url = frame["output"]["image_url"]
    assert execution.observation == "Execution Output:\n" + codeact.IMAGE_PLACEHOLDER

    def fetch(user):
        client = Client()
        client.force_login(user)
        return client.get(url)

    mine = await db(fetch)(owner)
    assert mine.status_code == 200 and mine["Content-Type"] == "image/png"
    assert mine["X-Content-Type-Options"] == "nosniff"
    assert mine.content == bytes(image.image)
    assert (await db(fetch)(other_user)).status_code == 404


def upload(user, conversation, name, data, content_type="text/csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = Client()
    client.force_login(user)
    return client.post(
        f"/c/{conversation.id}/files/", {"file": SimpleUploadedFile(name, data, content_type)}
    )


async def test_an_uploaded_csv_is_analysed_and_the_chart_downloaded(
    worker, model_server, owner, other_user, conversation
):
    rows = "month,sales\n" + "".join(f"2026-{m:02d},{100 + 10 * m}\n" for m in range(1, 13))
    response = await db(upload)(owner, conversation, "../Sales Data.csv", rows.encode())
    assert response.status_code == 201
    stored = response.json()["files"][0]
    assert stored["path"] == "Sales_Data.csv" and stored["origin"] == "upload"

    analysis = (
        "import pandas as pd\n"
        "df = pd.read_csv('Sales_Data.csv')\n"
        "print(df['sales'].sum())\n"
        "ax = df.plot(x='month', y='sales')\n"
        "ax.figure.savefig('trend.png')"
    )
    model_server.push(code(analysis), Script(text="Sales rose every month; total 1980."))
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Plot the sales trend of my CSV.")
    assert finished["turn"]["status"] == "done"

    assert "- /workspace/Sales_Data.csv (" in model_server.requests[0]["messages"][0]["content"]
    (execution,) = await db(executions_of)(conversation)
    assert execution.status == "ok", execution.observation
    kinds = [o.output_type for o in await db(outputs_of)(execution)]
    assert kinds == ["stream", "display_data"]
    assert "Files saved in /workspace: trend.png" in execution.observation

    chart = await db(WorkspaceFile.objects.get)(conversation=conversation, path="trend.png")
    assert chart.origin == "generated" and chart.execution_id == execution.pk
    assert any(f["file"]["path"] == "trend.png" for f in frames_of(sock, "file"))

    def download(user):
        client = Client()
        client.force_login(user)
        response = client.get(f"/c/{conversation.id}/files/{chart.pk}/")
        response.body = b"".join(response) if response.status_code == 200 else b""
        return response

    got = await db(download)(owner)
    assert got.status_code == 200
    assert got["Content-Disposition"] == 'attachment; filename="trend.png"'
    assert got["X-Content-Type-Options"] == "nosniff"
    assert got.body.startswith(b"\x89PNG")
    assert (await db(download)(other_user)).status_code == 404


async def test_output_streams_live_while_the_cell_runs(worker, model_server, owner, conversation):
    model_server.push(
        code("import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')"),
        Script(text="Done."),
    )
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Go"})
        first = await sock.receive_until(lambda f: f["type"] == "output", timeout=30)
        assert first["output"]["text"] == "first\n"
        # the cell is still running when its first line arrives
        assert frames_of(sock, "execution")[-1]["execution"]["status"] == "running"
        delta = await sock.receive_until(lambda f: f["type"] == "output_delta", timeout=10)
        assert (delta["offset"], delta["text"]) == (6, "second\n")
        await sock.turn_finished(20)
    (execution,) = await db(executions_of)(conversation)
    assert [o.text for o in await db(outputs_of)(execution)] == ["first\nsecond\n"]


async def test_stop_interrupts_a_long_cell_and_keeps_the_kernel(
    worker, model_server, owner, conversation
):
    model_server.push(
        code(
            "import time\nkept = 'still here'\n"
            "for i in range(300):\n    print(i, flush=True)\n    time.sleep(0.1)"
        )
    )
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Count slowly"})
        await sock.receive_until(lambda f: f["type"] == "output", timeout=30)
        pressed = time.monotonic()
        await sock.send({"type": "stop"})
        stopped = await sock.receive_until(
            lambda f: f["type"] == "execution" and f["execution"]["status"] != "running", 10
        )
        took = time.monotonic() - pressed
        finished = await sock.turn_finished(10)
    assert stopped["execution"]["status"] == "interrupted"
    assert took < 5, took  # the cell would have run for 30 s
    assert finished["turn"]["status"] == "stopped"
    (execution,) = await db(executions_of)(conversation)
    assert not execution.kernel_restarted
    assert execution.observation.endswith("[The user stopped this execution.]")

    # The next turn: the kernel kept its state, and the model knows what happened.
    model_server.push(code("print(kept)"), Script(text="It is still here."))
    async with open_socket(owner, conversation.id) as sock:
        await ask(sock, "Is the variable still there?")
    *_, last = await db(executions_of)(conversation)
    assert [o.text for o in await db(outputs_of)(last)] == ["still here\n"]
    history = model_server.requests[1]["messages"]
    assert any("[The user stopped this execution.]" in m["content"] for m in history)


async def test_stop_during_generation_runs_no_code(worker, model_server, owner, conversation):
    model_server.push(Script(chunks=["<execute>\n", "x = 1\n"] + ["# pad\n"] * 100, delay=0.05))
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Go"})
        await sock.receive_until(lambda f: f["type"] == "delta", timeout=10)
        await sock.send({"type": "stop"})
        finished = await sock.turn_finished(5)
    assert finished["turn"]["status"] == "stopped"
    assert await db(executions_of)(conversation) == []
    reply = await db(Message.objects.get)(conversation=conversation, role="assistant")
    assert reply.status == "stopped" and not reply.final


async def test_a_failing_endpoint_mid_turn_keeps_what_ran(
    worker, model_server, owner, conversation
):
    model_server.push(
        code("answer = 6 * 7\nprint(answer)"), Script(text="one two three", drop_after=2)
    )
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Compute 6*7")
    assert finished["turn"]["status"] == "failed"
    assert finished["turn"]["error_code"] == "model_bad_stream"
    (execution,) = await db(executions_of)(conversation)
    assert execution.status == "ok"
    assert [o.text for o in await db(outputs_of)(execution)] == ["42\n"]
    replies = await db(list)(Message.objects.filter(conversation=conversation, role="assistant"))
    assert [r.status for r in replies] == ["complete", "failed"]


async def test_the_execution_limit_ends_the_turn_with_a_notice(
    worker, model_server, owner, conversation, settings
):
    # The worker uses the default of 5 executions per turn.
    model_server.push(*[code(f"print({n})") for n in range(6)])
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Loop forever")
    assert finished["turn"]["status"] == "done"
    assert len(await db(executions_of)(conversation)) == 5
    notice = await db(Message.objects.get)(conversation=conversation, role="notice")
    assert notice.code == "execution_limit"
    assert "last execution allowed" in model_server.requests[5]["messages"][-1]["content"]


async def test_a_worker_killed_mid_cell_is_interrupted_and_nothing_runs_twice(
    worker, _workers, model_server, owner, conversation
):
    model_server.push(code("import time\nprint('started', flush=True)\ntime.sleep(60)"))
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Long job"})
        await sock.receive_until(lambda f: f["type"] == "output", timeout=30)
        turn = await db(Turn.objects.get)(conversation=conversation)
        pid = int(turn.worker.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)  # the worker dies mid-cell
        await asyncio.sleep(3.5)  # the lease (3 s in tests) runs out
        await db(tasks.sweep_turns)()  # what beat does every few seconds
        finished = await sock.turn_finished(5)
    assert finished["turn"]["status"] == "interrupted"
    assert finished["turn"]["error_code"] == "worker_lost"
    (execution,) = await db(executions_of)(conversation)
    assert execution.status == "lost"
    assert [o.text for o in await db(outputs_of)(execution)] == ["started\n"]

    # A new worker: the turn is not run again, and the conversation goes on.
    _workers.append(await asyncio.to_thread(start_worker))
    model_server.push(code("print('after')"), Script(text="Fine."))
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Continue")
    assert finished["turn"]["status"] == "done"
    executions = await db(executions_of)(conversation)
    assert [e.code for e in executions] == [
        "import time\nprint('started', flush=True)\ntime.sleep(60)",
        "print('after')",
    ]
    assert [o.text for o in await db(outputs_of)(executions[1])] == ["after\n"]
    assert "cut off when the worker running it stopped" in str(model_server.requests[1]["messages"])


def _cut_the_workers_database_connections() -> int:
    """What a database restart does to a worker: every connection it holds dies."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name LIKE 'codeact-%%' AND application_name <> 'codeact-tests'"
        )
        killed: int = cursor.fetchone()[0]
    return killed


async def test_a_database_outage_mid_cell_fails_the_turn_and_says_why(
    worker, model_server, owner, conversation
):
    model_server.push(code("import time\nprint('started', flush=True)\ntime.sleep(2)"))
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Long job"})
        await sock.receive_until(lambda f: f["type"] == "output", timeout=30)
        assert await db(_cut_the_workers_database_connections)() >= 1
        finished = await sock.turn_finished(20)
    assert finished["turn"]["status"] == "failed"
    assert finished["turn"]["error_code"] == "database_unavailable"
    assert "database" in finished["turn"]["error"]
    (execution,) = await db(executions_of)(conversation)
    assert execution.status == "lost"  # it may have finished: never run again
    assert "database stopped answering" in execution.detail
    assert [o.text for o in await db(outputs_of)(execution)] == ["started\n"]

    model_server.push(Script(text="Back."))  # the worker goes on with new connections
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Again")
    assert finished["turn"]["status"] == "done"


def _take_lease(turn_id: int) -> None:
    """What the sweeper does to a worker that paused past its lease (a long GC, a
    frozen VM): the turn is interrupted while its thread lives on. The row lock
    keeps the worker's renewal out until the lease is gone."""
    with transaction.atomic():
        Turn.objects.select_for_update().filter(pk=turn_id).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        turns.do_interrupt_turn(Turn.objects.get(pk=turn_id))


async def test_a_turn_that_lost_its_lease_writes_nothing_more(
    worker, model_server, owner, conversation
):
    model_server.push(
        code("import time\nprint('started', flush=True)\ntime.sleep(4)\nprint('late')")
    )
    async with open_socket(owner, conversation.id) as sock:
        await sock.send({"type": "user_message", "text": "Long job"})
        await sock.receive_until(lambda f: f["type"] == "output", timeout=30)
        turn = await db(Turn.objects.get)(conversation=conversation)
        await db(_take_lease)(turn.pk)
        finished = await sock.turn_finished(5)
        assert finished["turn"]["status"] == "interrupted"
        seq = finished["seq"]
        await asyncio.sleep(6)  # the old thread's cell would have ended by now
    (execution,) = await db(executions_of)(conversation)
    assert execution.status == "lost"
    assert [o.text for o in await db(outputs_of)(execution)] == ["started\n"]
    assert len(model_server.requests) == 1  # the old thread asked the model nothing more
    conversation_now = await db(type(conversation).objects.get)(pk=conversation.pk)
    assert conversation_now.last_seq == seq

    # The conversation goes on, with one turn writing to it.
    model_server.push(Script(text="Fine."))
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Again")
    assert finished["turn"]["status"] == "done"


async def test_a_smoke_turn_against_the_bundled_model(worker, llama_server, owner):
    conversation = await db(ConversationFactory)(owner=owner, model="bundled")
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Use Python to print 2 + 2.", timeout=180)
    assert finished["turn"]["status"] == "done", finished
    replies = await db(list)(Message.objects.filter(conversation=conversation, role="assistant"))
    assert replies and all(r.status == "complete" for r in replies)
    assert replies[-1].content.strip()


async def test_a_reaped_sandbox_comes_back_with_the_files_and_a_notice(
    worker, model_server, owner, conversation
):
    model_server.push(
        code("secret = 41\nopen('notes.txt', 'w').write('kept on disk')"), Script(text="Saved.")
    )
    async with open_socket(owner, conversation.id) as sock:
        await ask(sock, "Remember 41 and write a note.")

    def reap():
        record = SandboxRecord.objects.get(conversation=conversation, state="claimed")
        pool.remove(record, "idle")  # what the reaper does after 15 idle minutes

    await db(reap)()
    model_server.push(code("print(open('notes.txt').read())\nprint(secret)"), Script(text="Hm."))
    async with open_socket(owner, conversation.id) as sock:
        await ask(sock, "Read the note and the number.")
    *_, last = await db(executions_of)(conversation)
    outputs = await db(outputs_of)(last)
    assert outputs[0].text == "kept on disk\n"  # the file was restored
    assert outputs[-1].data["ename"] == "NameError"  # the variable was not
    assert last.observation.startswith("Execution Output:\n[Note: this is a new Python session.")
    notice = await db(Message.objects.get)(conversation=conversation, role="notice")
    assert notice.code == "state_lost" and "variables from earlier" in notice.content


async def test_the_sandbox_cap_fails_the_turn_with_a_clear_reason(
    worker, model_server, owner, conversation
):
    def fill_cap():
        for n in range(3):  # CODEACT_SANDBOXES_PER_USER
            SandboxRecord.objects.create(
                container_id=f"gone-{n}",
                state="claimed",
                owner=owner,
                conversation=ConversationFactory(owner=owner),
                image="codeact-sandbox:test",
            )

    await db(fill_cap)()
    model_server.push(code("print(1)"))
    async with open_socket(owner, conversation.id) as sock:
        finished = await ask(sock, "Run something")
    assert finished["turn"]["status"] == "failed"
    assert finished["turn"]["error_code"] == "sandbox_limit"
    assert "already have 3 conversations with a running Python sandbox" in finished["turn"]["error"]
    (execution,) = await db(executions_of)(conversation)
    assert execution.status == "failed"
