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
from chat.models import Conversation, Execution, Message, Output, Turn
from chat.rendering import reply_ran_code, shown_text

# ---- which model wrote a reply, and with which settings ----------------------------
# The conversation keeps only its model *key*, whose configuration can change;
# each reply keeps the model name and endpoint that answered and each turn the
# settings it ran with. Every export carries them under these keys, "" (a name)
# or None (a setting) where a row is from before they were recorded.


def writer_of(message: Message) -> dict[str, str]:
    """Which model wrote a reply: the endpoint's model name, the endpoint's
    host[:port] and how the model wrote its code (the action format)."""
    return {
        "model_name": message.model_name,
        "endpoint": message.endpoint,
        "action_format": message.action_format,
    }


def settings_of(turn: Turn) -> dict[str, float | int | None]:
    """The settings in effect when the model answered a turn (None for a cell the
    user ran, and for turns from before they were kept)."""
    return {
        "temperature": turn.temperature,
        "max_tokens": turn.max_tokens,
        "max_executions": turn.max_executions,
    }


def settings_words(turn: Turn) -> list[str]:
    """The recorded settings of a turn in words, as the transcript and Markdown
    show them; a setting that was not recorded is left out rather than guessed."""
    words = []
    if turn.temperature is not None:
        words.append(f"temperature {turn.temperature:g}")
    if turn.max_tokens is not None:
        words.append(f"max tokens {turn.max_tokens}")
    if turn.max_executions is not None:
        words.append(f"max executions {turn.max_executions}")
    return words


def model_names(messages: Iterable[Message]) -> list[str]:
    """The recorded model names of these replies, each once, in order of first use."""
    return list(dict.fromkeys(m.model_name for m in messages if m.model_name))


def _steps(
    conversation: Conversation,
) -> Iterator[tuple[Message, Execution | None, list[Output], Turn | None]]:
    """Each message shown, with the cell it ran, that cell's outputs, and the turn
    it answers (None for a question)."""
    executions = {e.message_id: e for e in conversation.executions.all()}
    turns = {t.pk: t for t in conversation.turns.all()}
    outputs: dict[int, list[Output]] = {}
    for output in Output.objects.filter(conversation=conversation).order_by(
        "execution_id", "index"
    ):
        outputs.setdefault(output.execution_id, []).append(output)
    for message in conversation.messages.exclude(status=Message.Status.STREAMING).order_by("id"):
        execution = executions.get(message.pk)
        turn = turns.get(message.turn_id) if message.turn_id is not None else None
        yield message, execution, outputs.get(execution.pk, []) if execution else [], turn


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


def _reply_metadata(message: Message, turn: Turn | None) -> dict[str, Any]:
    """What a notebook cell of an assistant reply records under "codeact": which
    model wrote it, and the key and settings of the turn it answers."""
    metadata: dict[str, Any] = writer_of(message)
    if turn is not None:
        metadata |= {"turn": turn.pk, "model": turn.model, **settings_of(turn)}
    return metadata


def notebook(conversation: Conversation) -> Any:
    """The conversation as an nbformat v4 notebook; raises if it would not validate.

    The cells read as the transcript did; which model wrote each reply, and the
    turn's settings, are in the cells' "codeact" metadata."""
    cells: list[Any] = [v4.new_markdown_cell(f"# {conversation.title}")]
    replies: list[Message] = []
    for message, execution, outputs, turn in _steps(conversation):
        text = _shown(message)
        reply = message.role == Message.Role.ASSISTANT
        if reply:
            replies.append(message)
        user_cell = message.code == Message.CELL and message.role == Message.Role.USER
        if user_cell:
            cells.append(v4.new_markdown_cell(_heading(message)))
        elif text:
            shown = v4.new_markdown_cell(f"{_heading(message)}\n\n{text}")
            if reply:
                shown.metadata["codeact"] = _reply_metadata(message, turn)
            cells.append(shown)
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
            if reply:
                cell.metadata["codeact"] |= _reply_metadata(message, turn)
            cells.append(cell)
    nb = v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "codeact": {
                "conversation": str(conversation.id),
                "model": conversation.model,
                "model_names": model_names(replies),
            },
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


def _code_span(text: str) -> str:
    """`text` as inline code, whatever backticks it holds."""
    ticks = "`"
    while ticks in text:
        ticks += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _md_writer_line(message: Message, turn: Turn | None) -> str:
    """An italic line naming the model that wrote a reply, its endpoint and action
    format, and (given the turn) the turn's settings; "" when none of the model
    name, endpoint or settings was recorded (a row from before they were), so an
    old conversation exports as it always did."""
    recorded = [
        f"{label} {_code_span(value)}"
        for label, value in (("model", message.model_name), ("endpoint", message.endpoint))
        if value
    ]
    settings = settings_words(turn) if turn is not None else []
    if not (recorded or settings):
        return ""
    if message.action_format:
        recorded.append(f"format {_code_span(message.action_format)}")
    line = " · ".join(recorded + settings)
    return f"*{line[0].upper()}{line[1:]}*"


def markdown(conversation: Conversation) -> str:
    """The conversation as Markdown; plots are embedded as data URIs.

    The first reply shown of each turn is headed by the model that wrote it and
    the turn's settings; a later reply of the turn only when another model (or
    endpoint, or format) wrote it."""
    parts = [f"# {conversation.title}"]
    last_writer: dict[int, dict[str, str]] = {}  # per turn, the writer last shown
    for message, execution, outputs, turn in _steps(conversation):
        text = _shown(message)
        writer_line = ""
        if message.role == Message.Role.ASSISTANT and turn is not None and (text or execution):
            first = turn.pk not in last_writer
            if first or last_writer[turn.pk] != writer_of(message):
                writer_line = _md_writer_line(message, turn if first else None)
            last_writer[turn.pk] = writer_of(message)
        user_cell = message.code == Message.CELL and message.role == Message.Role.USER
        if user_cell:
            parts.append(_heading(message))
        elif text:
            parts.append("\n\n".join(p for p in (_heading(message), writer_line, text) if p))
        elif writer_line:
            parts.append(writer_line)
        if execution is not None:
            parts.append(_fence(execution.code, "python"))
            parts.extend(p for p in (_md_output(o) for o in outputs) if p)
    return "\n\n".join(parts) + "\n"
