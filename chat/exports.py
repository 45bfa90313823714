"""A conversation as a file its owner (or a reviewer) can open elsewhere: a Jupyter
notebook (validated with nbformat) or Markdown, the transcript as the user saw
it, each code action a code cell with its outputs and plots.

Dataset exports for reviewers (full JSON, training JSONL) live in
`review.datasets`.
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

import nbformat
from nbformat import v4

from chat.actions.files import safe_name
from chat.agent.text import strip_ansi
from chat.labels import role_name
from chat.models import Conversation, Execution, Message, Output
from chat.rendering import reply_ran_code, shown_text


def _steps(conversation: Conversation) -> Iterator[tuple[Message, Execution | None, list[Output]]]:
    executions = {e.message_id: e for e in conversation.executions.all()}
    outputs: dict[int, list[Output]] = {}
    for output in Output.objects.filter(conversation=conversation).order_by(
        "execution_id", "index"
    ):
        outputs.setdefault(output.execution_id, []).append(output)
    for message in conversation.messages.exclude(status=Message.Status.STREAMING).order_by("id"):
        execution = executions.get(message.pk)
        yield message, execution, outputs.get(execution.pk, []) if execution else []


def _shown(message: Message) -> str:
    """The message's text as the page shows it: a reply without its action."""
    ran = reply_ran_code(message.final, message.status)
    return shown_text(message.role, message.content, message.action_format, ran)


def _heading(message: Message) -> str:
    """Who said it, as the exports label it: a cell the user ran is told apart from
    the assistant's cells, and an earlier version is marked as replaced."""
    if message.role == Message.Role.USER and message.code == Message.CELL:
        title = "You ran this cell"
    else:
        title = role_name(message.role)
    if message.superseded_at is not None:
        title += " (earlier version, replaced; not sent to the model)"
    return f"**{title}:**"


def _image_data(output: Output) -> str:
    """An image output as notebooks hold it: base64, or the SVG's text."""
    raw = bytes(output.image or b"")
    if output.image_mime == "image/svg+xml":
        return raw.decode(errors="replace")
    return base64.b64encode(raw).decode()


def _nb_output(output: Output, execution: Execution) -> Any:
    if output.output_type == Output.Type.STREAM:
        return v4.new_output("stream", name=output.name or "stdout", text=output.text)
    if output.output_type == Output.Type.ERROR:
        return v4.new_output(
            "error",
            ename=str(output.data.get("ename", "")),
            evalue=str(output.data.get("evalue", "")),
            traceback=[str(line) for line in output.data.get("traceback", [])],
        )
    data = {mime: value for mime, value in output.data.items()}
    if output.image_mime:
        data[output.image_mime] = _image_data(output)
    if output.output_type == Output.Type.EXECUTE_RESULT:
        return v4.new_output("execute_result", data=data, execution_count=execution.execution_count)
    return v4.new_output("display_data", data=data)


def notebook(conversation: Conversation) -> Any:
    """The conversation as an nbformat v4 notebook; raises if it would not validate."""
    cells: list[Any] = [v4.new_markdown_cell(f"# {conversation.title}")]
    for message, execution, outputs in _steps(conversation):
        text = _shown(message)
        user_cell = message.code == Message.CELL and message.role == Message.Role.USER
        if user_cell:
            cells.append(v4.new_markdown_cell(_heading(message)))
        elif text:
            cells.append(v4.new_markdown_cell(f"{_heading(message)}\n\n{text}"))
        if execution is not None:
            cell = v4.new_code_cell(
                execution.code,
                execution_count=execution.execution_count,
                outputs=[_nb_output(o, execution) for o in outputs],
            )
            cell.metadata["codeact"] = {
                "status": execution.status,
                "duration": execution.duration,
                "number": execution.number,
                "origin": execution.origin,  # agent, or user: a cell the user ran
                "superseded": message.superseded_at is not None,
            }
            cells.append(cell)
    nb = v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "codeact": {"conversation": str(conversation.id), "model": conversation.model},
        },
    )
    nbformat.validate(nb)
    return nb


def notebook_json(conversation: Conversation) -> str:
    return str(nbformat.writes(notebook(conversation)))


def export_stem(conversation: Conversation) -> str:
    """A file name for the conversation, from its title."""
    return safe_name(conversation.title)[:60] or "conversation"


def notebooks_zip(conversations: Iterable[Conversation]) -> bytes:
    """One validated notebook per conversation, in a zip; names are made unique."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for conversation in conversations:
            stem = f"{export_stem(conversation)}-{str(conversation.id)[:8]}"
            name, n = f"{stem}.ipynb", 1
            while name in used:
                n += 1
                name = f"{stem}-{n}.ipynb"
            used.add(name)
            archive.writestr(name, notebook_json(conversation))
    return buffer.getvalue()


def _fence(text: str, lang: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _md_output(output: Output) -> str:
    if output.output_type == Output.Type.STREAM:
        return _fence(output.text)
    if output.output_type == Output.Type.ERROR:
        return _fence(strip_ansi(output.text) or str(output.data.get("evalue", "")))
    if output.image_mime and output.image_mime != "image/svg+xml":
        return f"![output](data:{output.image_mime};base64,{_image_data(output)})"
    plain = str(output.data.get("text/plain", ""))
    return _fence(plain) if plain else ""


def markdown(conversation: Conversation) -> str:
    """The conversation as Markdown; plots are embedded as data URIs."""
    parts = [f"# {conversation.title}"]
    for message, execution, outputs in _steps(conversation):
        text = _shown(message)
        user_cell = message.code == Message.CELL and message.role == Message.Role.USER
        if user_cell:
            parts.append(_heading(message))
        elif text:
            parts.append(f"{_heading(message)}\n\n{text}")
        if execution is not None:
            parts.append(_fence(execution.code, "python"))
            parts.extend(p for p in (_md_output(o) for o in outputs) if p)
    return "\n\n".join(parts) + "\n"
