"""A conversation as a Jupyter notebook (validated with nbformat) or as Markdown.

Both follow the transcript: the user's messages and the assistant's text as
Markdown, each code action as a code cell with its outputs, plots included.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import nbformat
from nbformat import v4

from chat.agent import codeact
from chat.models import Conversation, Execution, Message, Output

ROLE_TITLES = {"user": "You", "assistant": "Assistant", "notice": "Note"}


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


def _text(message: Message) -> str:
    if message.role == Message.Role.ASSISTANT:
        return codeact.display_text(message.content)
    return message.content


def _image_data(output: Output) -> str:
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
        text = _text(message)
        if text:
            title = ROLE_TITLES.get(message.role, message.role)
            cells.append(v4.new_markdown_cell(f"**{title}:**\n\n{text}"))
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


def _fence(text: str, lang: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _md_output(output: Output) -> str:
    if output.output_type == Output.Type.STREAM:
        return _fence(output.text)
    if output.output_type == Output.Type.ERROR:
        return _fence(codeact.strip_ansi(output.text) or str(output.data.get("evalue", "")))
    if output.image_mime and output.image_mime != "image/svg+xml":
        return f"![output](data:{output.image_mime};base64,{_image_data(output)})"
    plain = str(output.data.get("text/plain", ""))
    return _fence(plain) if plain else ""


def markdown(conversation: Conversation) -> str:
    """The conversation as Markdown; plots are embedded as data URIs."""
    parts = [f"# {conversation.title}"]
    for message, execution, outputs in _steps(conversation):
        text = _text(message)
        if text:
            parts.append(f"**{ROLE_TITLES.get(message.role, message.role)}:**\n\n{text}")
        if execution is not None:
            parts.append(_fence(execution.code, "python"))
            parts.extend(p for p in (_md_output(o) for o in outputs) if p)
    return "\n\n".join(parts) + "\n"
