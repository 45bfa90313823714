"""Conversations as datasets, for audit and for fine-tuning.

- Full-fidelity JSON: every row of each conversation, images and (optionally)
  workspace files included as base64.
- CodeActInstruct-style JSONL: one record per conversation, the messages
  exactly as the model saw them (system prompt, user messages, assistant
  replies with `<execute>` blocks, `Execution Output:` observations), rebuilt
  by `chat.history`, the same code that builds the worker's prompt.

Both say which model wrote each reply (model name, endpoint, action format) and
the settings each turn ran with: the conversation's model key alone cannot, as
the configuration behind a key can change.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chat.agent import codeact
from chat.exports import model_names, settings_of, writer_of
from chat.history import Step, model_messages, system_prompt_for
from chat.models import Conversation, Feedback, Message, Output, Turn, WebRequest

JSON_FORMAT = "codeact-web.conversations/1"


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _b64(raw: Any) -> str | None:
    return base64.b64encode(bytes(raw)).decode() if raw is not None else None


def _user(user: Any) -> str | None:
    return user.get_username() if user is not None else None


# ---- full-fidelity JSON -----------------------------------------------------------


def _outputs(conversation: Conversation) -> dict[int, list[dict[str, Any]]]:
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
    return outputs


def _turns(conversation: Conversation) -> list[dict[str, Any]]:
    return [
        {
            "id": t.pk,
            "kind": t.kind,
            "status": t.status,
            "model": t.model,
            "user_message_id": t.user_message_id,
            "worker": t.worker,
            "error_code": t.error_code,
            "error": t.error,
            **settings_of(t),
            "created_at": _time(t.created_at),
            "started_at": _time(t.started_at),
            "finished_at": _time(t.finished_at),
        }
        for t in conversation.turns.order_by("id")
    ]


def _messages(conversation: Conversation) -> list[dict[str, Any]]:
    return [
        {
            "id": m.pk,
            "turn_id": m.turn_id,
            "role": m.role,
            "status": m.status,
            "final": m.final,
            "code": m.code,
            "content": m.content,
            "usage": m.usage,
            **writer_of(m),  # action_format, and which model and endpoint wrote it
            "superseded_at": _time(m.superseded_at),
            "created_at": _time(m.created_at),
            "updated_at": _time(m.updated_at),
        }
        for m in conversation.messages.order_by("id")
    ]


def _executions(conversation: Conversation) -> list[dict[str, Any]]:
    outputs = _outputs(conversation)
    return [
        {
            "id": e.pk,
            "turn_id": e.turn_id,
            "message_id": e.message_id,
            "number": e.number,
            "origin": e.origin,
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
            "web_requests": [_web_request(r) for r in e.web_requests.all()],
        }
        for e in conversation.executions.select_related("sandbox")
        .prefetch_related("web_requests")
        .order_by("id")
    ]


def _web_request(request: WebRequest) -> dict[str, Any]:
    return {
        "at": _time(request.at),
        "method": request.method,
        "host": request.host,
        "port": request.port,
        "url": request.url,
        "status": request.status,
        "refused": request.refused,
        "outcome": request.outcome,
        "error": request.error,
        "reply_bytes": request.reply_bytes,
        "request_bytes": request.request_bytes,
        "duration_ms": request.duration_ms,
        "server": request.server,
    }


def _files(conversation: Conversation, with_files: bool) -> list[dict[str, Any]]:
    files = conversation.files.order_by("path")
    if not with_files:
        files = files.defer("content")
    return [
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
    ]


def _judgements(conversation: Conversation) -> dict[str, list[dict[str, Any]]]:
    """The owner's ratings and the reviewers' notes."""
    return {
        "feedback": [
            {
                "message_id": f.message_id,
                "user": _user(f.user),
                "rating": f.rating,
                "comment": f.comment,
                "created_at": _time(f.created_at),
            }
            for f in conversation.feedback.select_related("user").order_by("id")
        ],
        "review_notes": [
            {"author": _user(n.author), "text": n.text, "created_at": _time(n.created_at)}
            for n in conversation.review_notes.select_related("author")
        ],
    }


def conversation_record(conversation: Conversation, *, with_files: bool = False) -> dict[str, Any]:
    """Every row of one conversation as plain JSON values."""
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "owner": _user(conversation.owner),
        "model": conversation.model,
        "web_access": conversation.web_access,
        "created_at": _time(conversation.created_at),
        "updated_at": _time(conversation.updated_at),
        "flagged": conversation.flagged,
        "flagged_at": _time(conversation.flagged_at),
        "flagged_by": _user(conversation.flagged_by),
        "turns": _turns(conversation),
        "messages": _messages(conversation),
        "executions": _executions(conversation),
        "files": _files(conversation, with_files),
        **_judgements(conversation),
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


@dataclass
class _Kept:
    """The part of a conversation a training record holds."""

    steps: list[Step] = field(default_factory=list)
    # Each kept turn the model answered, with its replies in the order of `steps`.
    turns: list[tuple[Turn, list[Message]]] = field(default_factory=list)

    @property
    def last_turn(self) -> Turn | None:
        return self.turns[-1][0] if self.turns else None


def _answered_turns(conversation: Conversation) -> _Kept:
    """The steps of the turns that ended with an answer, up to the first that did
    not, and those turns with their replies. Cells the user ran come in as the
    user's steps before the next question (as the model was told of them);
    superseded questions and answers are left out, as they were left out of the
    model's view."""
    replies: dict[int, list[Message]] = {}
    for m in (
        conversation.messages.filter(
            role=Message.Role.ASSISTANT, turn__isnull=False, superseded_at__isnull=True
        )
        .exclude(content="", execution__isnull=True)  # a function call has no text
        .select_related("execution")
        .order_by("id")
    ):
        replies.setdefault(m.turn_id or 0, []).append(m)
    kept = _Kept()
    cells: list[Step] = []  # cells the user ran since the last kept answer
    turns = (
        conversation.turns.filter(user_message__superseded_at__isnull=True)
        .select_related("user_message", "user_message__execution")
        .order_by("id")
    )
    for turn in turns:
        if turn.kind == Turn.Kind.CELL:
            execution = getattr(turn.user_message, "execution", None)
            if execution is not None:
                cells.append(_step(turn.user_message, execution))
            continue
        turn_replies = replies.get(turn.pk, [])
        answered = bool(turn_replies) and getattr(turn_replies[-1], "execution", None) is None
        if turn.status != Turn.Status.DONE or not answered:
            break
        kept.steps.extend(cells)
        cells = []
        kept.steps.append(Step(Message.Role.USER, turn.user_message.content))
        kept.steps.extend(_step(reply, getattr(reply, "execution", None)) for reply in turn_replies)
        kept.turns.append((turn, turn_replies))
    return kept


def _step(message: Message, execution: Any) -> Step:
    if execution is None:
        return Step(message.role, message.content, action_format=message.action_format)
    return Step(
        message.role,
        message.content,
        execution.observation,
        execution.status,
        execution.detail,
        execution.code,
        message.action_format,
    )


def training_record(conversation: Conversation) -> dict[str, Any] | None:
    """The conversation as one CodeActInstruct-style record, or None if no turn completed.

    Only turns that finished with an answer are kept, and the record stops
    before the first turn that did not (failed, stopped, interrupted, or cut
    at the execution limit): later turns may rely on what that turn did, and
    its partial reply is not an example to learn from. The system prompt lists
    the workspace files that existed when the last kept turn was asked.
    """
    kept = _answered_turns(conversation)
    last_turn = kept.last_turn
    if last_turn is None:
        return None
    system = system_prompt_for(
        conversation.id, as_of=last_turn.created_at, web=conversation.has_web_access
    )
    ratings = Feedback.objects.filter(conversation=conversation)
    # CodeAct's own shape, <execute> blocks, whichever format each model wrote in.
    messages = [{"role": "system", "content": system}, *model_messages(kept.steps, "execute")]
    return {
        "id": str(conversation.id),
        "conversations": messages,
        "model": conversation.model,
        "model_names": model_names(reply for _, replies in kept.turns for reply in replies),
        "turns": _provenance(kept, messages),
        "flagged": conversation.flagged,
        "rating": {
            "up": sum(1 for f in ratings if f.rating == Feedback.Rating.UP),
            "down": sum(1 for f in ratings if f.rating == Feedback.Rating.DOWN),
        },
    }


def _provenance(kept: _Kept, messages: list[Any]) -> list[dict[str, Any]]:
    """Per kept turn: its model key and settings, and per reply which model wrote
    it, with `message`, the reply's index in the record's "conversations".

    Replayed as `execute`, every reply is exactly one assistant message (a reply
    that ran code is followed by its observation as a user message, which is never
    joined to an assistant one), so the assistant messages and the replies pair up
    in order."""
    positions = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    count = sum(len(replies) for _, replies in kept.turns)
    if len(positions) != count:
        raise ValueError(f"{len(positions)} assistant messages for {count} replies")
    at = iter(positions)
    return [
        {
            "model": turn.model,
            **settings_of(turn),
            "replies": [{"message": next(at), **writer_of(reply)} for reply in replies],
        }
        for turn, replies in kept.turns
    ]


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
