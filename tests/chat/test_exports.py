"""Notebook and Markdown exports: they validate, carry every step, and are the owner's only."""

import base64
import json

import nbformat
import pytest
from django.urls import reverse

from chat.actions.conversations import do_create_conversation
from tests.factories import PNG, analysis_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysis(owner):
    return analysis_conversation(owner)


def test_the_notebook_validates_and_keeps_code_and_outputs(client, owner, analysis):
    client.force_login(owner)
    response = client.get(reverse("chat:export_ipynb", args=[analysis.id]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Sales_trend.ipynb"'
    nb = nbformat.reads(response.content.decode(), as_version=4)
    nbformat.validate(nb)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds == ["markdown", "markdown", "markdown", "code", "markdown"]
    code = nb.cells[3]
    assert code.source == "print(df.shape)\nplt.plot([1, 2])" and code.execution_count == 3
    types = [o.output_type for o in code.outputs]
    assert types == ["stream", "display_data", "execute_result", "error"]
    assert base64.b64decode(code.outputs[1].data["image/png"]) == PNG
    assert code.outputs[2].data["text/html"] == "<table/>"
    assert nb.cells[2].source == "**Assistant:**\n\nLoading."  # the action is the code cell
    assert nb.cells[4].source.endswith("Sales rose. Up 7 per month")


def test_the_markdown_export_has_the_code_and_an_embedded_plot(client, owner, analysis):
    client.force_login(owner)
    response = client.get(reverse("chat:export_md", args=[analysis.id]))
    text = response.content.decode()
    assert response["Content-Type"].startswith("text/markdown")
    assert text.startswith("# Sales trend\n\n**You:**\n\nPlot it")
    assert "```python\nprint(df.shape)\nplt.plot([1, 2])\n```" in text
    assert "```\n(12, 2)\n```" in text
    assert "![output](data:image/png;base64," in text
    assert "\x1b" not in text


def test_exports_are_the_owners_only(client, other_user, analysis):
    client.force_login(other_user)
    for name in ("chat:export_ipynb", "chat:export_md"):
        assert client.get(reverse(name, args=[analysis.id])).status_code == 404


def test_an_empty_conversation_exports_a_valid_notebook(client, owner):
    conversation = do_create_conversation(owner)
    client.force_login(owner)
    nb = json.loads(client.get(reverse("chat:export_ipynb", args=[conversation.id])).content)
    nbformat.validate(nbformat.from_dict(nb))
