"""`manage.py ask`: one turn from a terminal through the worker's own path — the
scripted model, a real sandbox, the rows a page would show — streamed to stdout."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from chat.models import Conversation, Execution, Message, SandboxRecord
from tests.support.scripted_model import Script

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.usefixtures("remove_sandboxes"),
]

PLOT = (
    "import pandas as pd, matplotlib.pyplot as plt\n"
    "df = pd.read_csv('visits.csv')\n"
    "total = int(df['n'].sum())\n"
    "print('total', total)\n"
    "df.plot(x='day', y='n'); plt.show()"
)


def ask(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ask", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_ask_streams_the_answer_cells_and_plots_and_stores_the_conversation(
    model_server, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "visits.csv"
    data.write_text("day,n\n1,3\n2,5\n3,9\n")
    model_server.push(
        Script(text=f"Let me look.\n```python\n{PLOT}\n```\n"),
        Script(text="There were 17 visits in all."),
    )
    call_command("ask", "How many visits?", "--model", "fenced", "--file", str(data))
    printed = capsys.readouterr()
    assert "Let me look." in printed.out
    assert printed.out.count("df.plot(x='day', y='n')") == 1  # the code as the reply wrote it
    assert "total 17" in printed.out
    assert "There were 17 visits in all." in printed.out
    assert "[uploaded /workspace/visits.csv]" in printed.err
    assert "--- ok in" in printed.err

    conversation = Conversation.objects.get()
    assert conversation.owner.username == "terminal"
    assert not conversation.owner.has_usable_password()
    saved = sorted((tmp_path / "codeact-plots").iterdir())
    assert [p.name for p in saved] == [f"{conversation.pk}-1.png"]
    assert saved[0].read_bytes().startswith(b"\x89PNG")
    assert f"[plot saved: {saved[0]}]" in printed.out
    assert f"--conversation {conversation.pk}" in printed.err

    # Stored as the page stores a turn, with which model wrote it and the settings.
    step, answer = Message.objects.filter(conversation=conversation, role="assistant")
    assert answer.final and answer.content == "There were 17 visits in all."
    assert (step.model_name, step.action_format) == ("scripted", "fence")
    assert step.endpoint == f"127.0.0.1:{model_server.port}"
    turn = answer.turn
    assert (turn.status, turn.max_executions, turn.temperature) == ("done", 5, 0.2)
    assert Execution.objects.get(conversation=conversation).status == "ok"


def test_ask_continues_a_conversation_in_the_same_kernel(model_server, capsys):
    model_server.push(
        Script(text="```python\nsecret = 6 * 7\n```\n"),
        Script(text="Stored."),
        Script(text="```python\nprint(secret)\n```\n"),
        Script(text="It is 42."),
    )
    call_command("ask", "Remember a number", "--model", "fenced")
    conversation = Conversation.objects.get()
    capsys.readouterr()
    call_command("ask", "What was it?", "--conversation", str(conversation.pk))
    assert "42\n" in capsys.readouterr().out
    assert SandboxRecord.objects.filter(conversation=conversation, state="claimed").count() == 1
    # the second question saw the first turn
    assert model_server.requests[-1]["messages"][1]["content"] == "Remember a number"


def test_ask_says_what_is_wrong(model_server, tmp_path):
    """Each bad input is refused before anything is stored; a dead endpoint fails the turn."""
    with pytest.raises(CommandError, match="cannot read"):
        ask("Q", "--file", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="no conversation"):
        ask("Q", "--conversation", "not-a-uuid")
    with pytest.raises(CommandError, match="no model 'nope'"):
        ask("Q", "--model", "nope")
    model_server.pause()  # a dead endpoint: the turn fails, and the command says why
    try:
        with pytest.raises(CommandError, match="Could not reach the model server"):
            ask("Q")
    finally:
        model_server.resume()
    (conversation,) = Conversation.objects.all()
    assert conversation.turns.get().error_code == "model_unreachable"
