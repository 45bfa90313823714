"""Conversations as files.

- A Jupyter notebook (validated with nbformat) or Markdown: the transcript as
  the user saw it, each code action a code cell with its outputs and plots.
- Full-fidelity JSON for audit: every row of the conversation, images and
  (optionally) workspace files included as base64.
- CodeActInstruct-style JSONL for fine-tuning: one record per conversation,
  the messages exactly as the model saw them (system prompt, user messages,
  assistant replies with `<execute>` blocks, `Execution Output:` observations).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

import nbformat
from nbformat import v4

from chat import files
from chat.agent import codeact
from chat.agent.codeact import PromptFile
from chat.models import (
    Conversation,
    Execution,
    Feedback,
    Message,
    Output,
    Turn,
    WorkspaceFile,
)

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


def export_stem(conversation: Conversation) -> str:
    """A file name for the conversation, from its title."""
    return files.safe_name(conversation.title)[:60] or "conversation"


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


# ---- full-fidelity JSON -----------------------------------------------------------

JSON_FORMAT = "codeact-web.conversations/1"


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _b64(raw: Any) -> str | None:
    return base64.b64encode(bytes(raw)).decode() if raw is not None else None


def conversation_record(conversation: Conversation, *, with_files: bool = False) -> dict[str, Any]:
    """Every row of one conversation as plain JSON values."""
    outputs: dict[int, list[dict[str, Any]]] = {}
    for o in Output.objects.filter(conversation=conversation).order_by("execution_id", "index"):
        outputs.setdefault(o.execution_id, []).append(
            {
                "index": o.index,
                "output_type": o.output_type,
                "name": o.name,
                "text": o.text,
                "data": o.data,
                "image_mime": o.image_mime,
                "image_base64": _b64(o.image) if o.image_mime else None,
                "created_at": _time(o.created_at),
            }
        )
    files = conversation.files.order_by("path")
    if not with_files:
        files = files.defer("content")
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "owner": conversation.owner.get_username(),
        "model": conversation.model,
        "created_at": _time(conversation.created_at),
        "updated_at": _time(conversation.updated_at),
        "flagged": conversation.flagged,
        "flagged_at": _time(conversation.flagged_at),
        "flagged_by": conversation.flagged_by.get_username() if conversation.flagged_by else None,
        "turns": [
            {
                "id": t.pk,
                "status": t.status,
                "model": t.model,
                "user_message_id": t.user_message_id,
                "worker": t.worker,
                "error_code": t.error_code,
                "error": t.error,
                "created_at": _time(t.created_at),
                "started_at": _time(t.started_at),
                "finished_at": _time(t.finished_at),
            }
            for t in conversation.turns.order_by("id")
        ],
        "messages": [
            {
                "id": m.pk,
                "turn_id": m.turn_id,
                "role": m.role,
                "status": m.status,
                "final": m.final,
                "code": m.code,
                "content": m.content,
                "usage": m.usage,
                "created_at": _time(m.created_at),
                "updated_at": _time(m.updated_at),
            }
            for m in conversation.messages.order_by("id")
        ],
        "executions": [
            {
                "id": e.pk,
                "turn_id": e.turn_id,
                "message_id": e.message_id,
                "number": e.number,
                "code": e.code,
                "status": e.status,
                "execution_count": e.execution_count,
                "sandbox": e.sandbox.container_id if e.sandbox else None,
                "kernel_restarted": e.kernel_restarted,
                "detail": e.detail,
                "observation": e.observation,
                "dropped": e.dropped,
                "limits": e.limits,
                "started_at": _time(e.started_at),
                "finished_at": _time(e.finished_at),
                "duration": e.duration,
                "outputs": outputs.get(e.pk, []),
            }
            for e in conversation.executions.select_related("sandbox").order_by("id")
        ],
        "files": [
            {
                "path": f.path,
                "origin": f.origin,
                "size": f.size,
                "sha256": f.sha256,
                "execution_id": f.execution_id,
                "created_at": _time(f.created_at),
                "updated_at": _time(f.updated_at),
            }
            | ({"content_base64": _b64(f.content)} if with_files else {})
            for f in files
        ],
        "feedback": [
            {
                "message_id": f.message_id,
                "user": f.user.get_username(),
                "rating": f.rating,
                "comment": f.comment,
                "created_at": _time(f.created_at),
            }
            for f in conversation.feedback.select_related("user").order_by("id")
        ],
        "review_notes": [
            {
                "author": n.author.get_username() if n.author else None,
                "text": n.text,
                "created_at": _time(n.created_at),
            }
            for n in conversation.review_notes.select_related("author")
        ],
    }


def json_chunks(
    conversations: Iterable[Conversation], exported_at: str, *, with_files: bool = False
) -> Iterator[str]:
    """One JSON document, produced a conversation at a time (exports can be large)."""
    yield "{" + f'"format": {json.dumps(JSON_FORMAT)}, "exported_at": {json.dumps(exported_at)}'
    yield ', "conversations": ['
    for i, conversation in enumerate(conversations):
        record = conversation_record(conversation, with_files=with_files)
        yield ("," if i else "") + "\n" + json.dumps(record, ensure_ascii=False)
    yield "\n]}\n"


# ---- CodeActInstruct JSONL -------------------------------------------------------------


def training_record(conversation: Conversation) -> dict[str, Any] | None:
    """The conversation as one CodeActInstruct-style record, or None if no turn completed.

    Only turns that finished with an answer are kept, and the record stops
    before the first turn that did not (failed, stopped, interrupted, or cut
    at the execution limit): later turns may rely on what that turn did, and
    its partial reply is not an example to learn from. The system prompt lists
    the workspace files that existed when the last kept turn was asked.
    """
    replies: dict[int, list[Message]] = {}
    for m in (
        conversation.messages.filter(role=Message.Role.ASSISTANT, turn__isnull=False)
        .exclude(content="")
        .select_related("execution")
        .order_by("id")
    ):
        replies.setdefault(m.turn_id or 0, []).append(m)
    dialogue: list[dict[str, str]] = []
    last_turn: Turn | None = None
    for turn in conversation.turns.select_related("user_message").order_by("id"):
        steps = replies.get(turn.pk, [])
        answered = bool(steps) and getattr(steps[-1], "execution", None) is None
        if turn.status != Turn.Status.DONE or not answered:
            break
        dialogue.append({"role": "user", "content": turn.user_message.content})
        for reply in steps:
            dialogue.append({"role": "assistant", "content": reply.content})
            execution = getattr(reply, "execution", None)
            if execution is not None:
                told = Execution.observation_for(
                    execution.observation, execution.status, execution.detail
                )
                dialogue.append({"role": "user", "content": told})
        last_turn = turn
    if last_turn is None:
        return None
    files = WorkspaceFile.objects.filter(
        conversation=conversation, created_at__lte=last_turn.created_at
    ).only("path", "size", "origin")
    system = codeact.system_prompt([PromptFile(f.path, f.size, f.origin) for f in files])
    ratings = Feedback.objects.filter(conversation=conversation)
    return {
        "id": str(conversation.id),
        "conversations": [{"role": "system", "content": system}, *dialogue],
        "model": conversation.model,
        "flagged": conversation.flagged,
        "rating": {
            "up": sum(1 for f in ratings if f.rating == Feedback.Rating.UP),
            "down": sum(1 for f in ratings if f.rating == Feedback.Rating.DOWN),
        },
    }


def check_training_record(record: dict[str, Any]) -> None:
    """Raise ValueError unless the record is a well-formed CodeAct trajectory:
    system first, then user and assistant alternating, ending with an answer;
    every assistant `<execute>` block followed by its `Execution Output:`."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) < 3:
        raise ValueError("a record needs a system prompt, a question and an answer")
    for i, item in enumerate(turns):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise ValueError(f"message {i} is not a role and a text")
    if turns[0]["role"] != "system":
        raise ValueError("the first message must be the system prompt")
    for i, item in enumerate(turns[1:], start=1):
        expected = "user" if i % 2 == 1 else "assistant"
        if item["role"] != expected:
            raise ValueError(f"message {i} is {item['role']!r}, expected {expected!r}")
        if expected == "assistant":
            has_action = codeact.parse_action(item["content"]) is not None
            following = turns[i + 1]["content"] if i + 1 < len(turns) else None
            if has_action and not (following or "").startswith(codeact.OBSERVATION_PREFIX):
                raise ValueError(f"the code in message {i} is not followed by its output")
            if (
                not has_action
                and following is not None
                and following.startswith(codeact.OBSERVATION_PREFIX)
            ):
                raise ValueError(f"message {i + 1} is an output with no code before it")
    if turns[-1]["role"] != "assistant":
        raise ValueError("a record must end with the assistant's answer")


def jsonl_lines(conversations: Iterable[Conversation]) -> Iterator[str]:
    """One validated line per conversation that has at least one complete turn."""
    for conversation in conversations:
        record = training_record(conversation)
        if record is None:
            continue
        check_training_record(record)
        yield json.dumps(record, ensure_ascii=False) + "\n"
