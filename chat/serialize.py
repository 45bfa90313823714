"""Rows to event payloads (the shapes are defined in chat.events)."""

from __future__ import annotations

from django.urls import reverse

from chat import live
from chat.agent.text import human_size
from chat.events import (
    ConversationData,
    ConversationEvent,
    ExecutionData,
    ExecutionEvent,
    FileData,
    FileDeletedEvent,
    FileEvent,
    MessageData,
    MessageEvent,
    OutputData,
    OutputEvent,
    PersistedEvent,
    TurnData,
    TurnEvent,
    WebRequestData,
)
from chat.models import (
    Conversation,
    Execution,
    Message,
    Output,
    Turn,
    WebRequest,
    WorkspaceFile,
)
from chat.rendering import (
    highlight_code,
    render_markdown,
    reply_ran_code,
    sanitize_table_html,
    shown_text,
)


def message_data(message: Message) -> MessageData:
    streaming = message.status == Message.Status.STREAMING
    return {
        "id": message.pk,
        "role": message.role,
        "status": message.status,
        "content": message.content,
        # While streaming the client shows the raw text; HTML comes once, at the end.
        "html": "" if streaming else render_markdown(shown_message_text(message)),
        "final": message.final,
        "code": message.code,
        "turn_id": message.turn_id,
        "created_at": message.created_at.isoformat(),
        "superseded": message.superseded_at is not None,
        "cell": message.role == Message.Role.USER and message.code == Message.CELL,
    }


def shown_message_text(message: Message) -> str:
    """A message's text as shown: a reply without its action (its cell shows the code)."""
    return shown_text(
        message.role,
        message.content,
        message.action_format,
        reply_ran_code(message.final, message.status),
    )


def turn_data(turn: Turn) -> TurnData:
    return {
        "id": turn.pk,
        "kind": turn.kind,
        "status": turn.status,
        "user_message_id": turn.user_message_id,
        "error_code": turn.error_code,
        "error": turn.error,
        "created_at": turn.created_at.isoformat(),
        "finished_at": turn.finished_at.isoformat() if turn.finished_at else None,
    }


def conversation_data(conversation: Conversation) -> ConversationData:
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "model": conversation.model,
        "web_access": conversation.web_access,
    }


WEB_REQUESTS_SHOWN = 50


def web_request_data(request: WebRequest) -> WebRequestData:
    return {
        "method": request.method,
        "target": request.target,
        "outcome": request.outcome,
        "refused": request.refused,
        "bytes": request.reply_bytes,
        "ms": request.duration_ms,
    }


def execution_data(execution: Execution) -> ExecutionData:
    web = list(execution.web_requests.all())  # prefetched where many are serialized
    return {
        "id": execution.pk,
        "number": execution.number,
        "message_id": execution.message_id,
        "turn_id": execution.turn_id,
        "code": execution.code,
        "code_html": highlight_code(execution.code),
        "origin": execution.origin,
        "status": execution.status,
        "execution_count": execution.execution_count,
        "duration": execution.duration,
        "kernel_restarted": execution.kernel_restarted,
        "detail": execution.detail,
        "dropped": execution.dropped,
        "dropped_note": dropped_note(execution.dropped),
        "started_at": execution.started_at.isoformat(),
        "finished_at": execution.finished_at.isoformat() if execution.finished_at else None,
        "web_requests": [web_request_data(r) for r in web[:WEB_REQUESTS_SHOWN]],
        "web_total": len(web),
        "web_refused": sum(1 for r in web if r.refused),
    }


def dropped_note(dropped: dict[str, int]) -> str:
    """What a cell's limits kept out, in words ("" when nothing was)."""

    def count(n: int, thing: str) -> str:
        return f"{n:,} {thing}{'' if n == 1 else 's'}"

    parts = []
    if dropped.get("stream_bytes"):
        parts.append(f"{human_size(dropped['stream_bytes'])} of printed output")
    if dropped.get("displays"):
        parts.append(count(dropped["displays"], "displayed item"))
    if dropped.get("images"):
        parts.append(count(dropped["images"], "image"))
    if dropped.get("display_bytes"):
        parts.append(f"{human_size(dropped['display_bytes'])} of displayed data or error text")
    if not parts:
        return ""
    return "Over this cell's output limits, not kept: " + ", ".join(parts) + "."


def output_data(output: Output) -> OutputData:
    image_url = None
    if output.image_mime:
        image_url = reverse(
            "chat:output_image",
            kwargs={"conversation_id": output.conversation_id, "output_id": output.pk},
        )
    return {
        "id": output.pk,
        "execution_id": output.execution_id,
        "index": output.index,
        "output_type": output.output_type,
        "name": output.name,
        "text": output.text,
        "data": {k: v for k, v in output.data.items() if k != "text/html"},
        "html": sanitize_table_html(output.data["text/html"]) if "text/html" in output.data else "",
        "image_url": image_url,
        "image_mime": output.image_mime,
    }


def file_data(file: WorkspaceFile) -> FileData:
    return {
        "id": file.pk,
        "path": file.path,
        "origin": file.origin,
        "size": file.size,
        "size_label": human_size(file.size),
        "execution_id": file.execution_id,
        "url": reverse(
            "chat:download",
            kwargs={"conversation_id": file.conversation_id, "file_id": file.pk},
        ),
        "updated_at": file.updated_at.isoformat(),
    }


def execution_event(execution: Execution) -> ExecutionEvent:
    return {"type": "execution", "seq": execution.seq, "execution": execution_data(execution)}


def output_event(output: Output) -> OutputEvent:
    return {"type": "output", "seq": output.seq, "output": output_data(output)}


def file_event(file: WorkspaceFile) -> FileEvent:
    return {"type": "file", "seq": file.seq, "file": file_data(file)}


def file_deleted_event(file_id: int, seq: int) -> FileDeletedEvent:
    return {"type": "file_deleted", "seq": seq, "file_id": file_id}


def message_event(message: Message) -> MessageEvent:
    return {"type": "message", "seq": message.seq, "message": message_data(message)}


def turn_event(turn: Turn) -> TurnEvent:
    return {"type": "turn", "seq": turn.seq, "turn": turn_data(turn)}


def conversation_event(conversation: Conversation) -> ConversationEvent:
    return {
        "type": "conversation",
        "seq": conversation.seq,
        "conversation": conversation_data(conversation),
    }


def events_after(conversation: Conversation, after_seq: int) -> list[PersistedEvent]:
    """Everything a client that has seen `after_seq` is missing, in seq order.

    Rows carry the seq of their last change, so this is a snapshot of each
    changed row, not a log. Messages still streaming are always included:
    their partial text is flushed without taking a sequence number.
    """
    events: list[PersistedEvent] = []
    messages = list(
        conversation.messages.filter(seq__gt=after_seq)
        | conversation.messages.filter(status=Message.Status.STREAMING)
    )
    current = live.read([m.pk for m in messages if m.status == Message.Status.STREAMING])
    for message in messages:
        if len(current.get(message.pk, "")) > len(message.content):
            message.content = current[message.pk]
        events.append(message_event(message))
    events.extend(turn_event(t) for t in conversation.turns.filter(seq__gt=after_seq))
    events.extend(
        execution_event(e)
        for e in conversation.executions.filter(seq__gt=after_seq).prefetch_related("web_requests")
    )
    events.extend(
        output_event(o)
        for o in Output.objects.filter(conversation=conversation, seq__gt=after_seq).defer("image")
    )
    events.extend(
        file_event(f) for f in conversation.files.filter(seq__gt=after_seq).defer("content")
    )
    if conversation.seq > after_seq:
        events.append(conversation_event(conversation))
    events.sort(key=lambda e: e["seq"])
    return events
