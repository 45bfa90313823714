"""The frames that travel over the conversation websocket, in both directions.

One definition serves the producer (actions, the turn runner), the consumer
and the tests. Server events that describe a persisted row carry `seq`; token
deltas are ephemeral and carry the UTF-16 offset at which their text starts,
so a client can apply them idempotently and detect a gap.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

# --- server -> client -------------------------------------------------------


class MessageData(TypedDict):
    id: int
    role: str
    status: str
    content: str
    html: str
    final: bool
    code: str  # notices: what they are about (e.g. execution_limit)
    turn_id: int | None
    created_at: str
    # The user edited this question or asked for another answer: kept, shown as an
    # earlier version, never sent to the model again.
    superseded: bool
    cell: bool  # a user message that is a cell the user ran (its execution has origin user)


class ExecutionData(TypedDict):
    id: int
    number: int
    message_id: int
    turn_id: int
    code: str
    code_html: str  # highlighted with Pygments, safe to insert
    origin: str  # agent, or user: a cell the user ran (typed, or edited from another)
    status: str
    execution_count: int | None
    duration: float | None
    kernel_restarted: bool
    detail: str
    dropped: dict[str, int]
    dropped_note: str  # the same in words, for the page
    started_at: str
    finished_at: str | None
    web_requests: list[WebRequestData]  # the first WEB_REQUESTS_SHOWN
    web_total: int
    web_refused: int


class WebRequestData(TypedDict):
    method: str
    target: str  # the URL, or https://host for an HTTPS tunnel
    outcome: str  # "status 200", "blocked: private address", ...
    refused: bool
    bytes: int
    ms: int


class OutputData(TypedDict):
    id: int
    execution_id: int
    index: int
    output_type: str
    name: str
    text: str
    data: dict[str, Any]  # the mime bundle without text/html (see html) and images
    html: str  # text/html output reduced to a table allowlist, safe to insert
    image_url: str | None
    image_mime: str


class FileData(TypedDict):
    id: int
    path: str
    origin: str
    size: int
    size_label: str  # the size as people read it (one formatter, on the server)
    execution_id: int | None
    url: str
    updated_at: str


class TurnData(TypedDict):
    id: int
    kind: str  # answer, or cell: a cell the user runs (no model is asked)
    status: str
    user_message_id: int
    error_code: str
    error: str
    created_at: str
    finished_at: str | None


class ConversationData(TypedDict):
    id: str
    title: str
    model: str
    web_access: bool  # the owner's switch (it matters only where the deployment offers it)


class MessageEvent(TypedDict):
    type: Literal["message"]
    seq: int
    message: MessageData


class TurnEvent(TypedDict):
    type: Literal["turn"]
    seq: int
    turn: TurnData


class ConversationEvent(TypedDict):
    type: Literal["conversation"]
    seq: int
    conversation: ConversationData


class ExecutionEvent(TypedDict):
    type: Literal["execution"]
    seq: int
    execution: ExecutionData


class OutputEvent(TypedDict):
    type: Literal["output"]
    seq: int
    output: OutputData


class OutputDeltaEvent(TypedDict):
    """Text appended to a stream output; `offset` is where it starts (UTF-16)."""

    type: Literal["output_delta"]
    seq: int
    output_id: int
    execution_id: int
    offset: int
    text: str


class FileEvent(TypedDict):
    type: Literal["file"]
    seq: int
    file: FileData


class FileDeletedEvent(TypedDict):
    """The user deleted a file (its row is gone: a resync lists the files that remain)."""

    type: Literal["file_deleted"]
    seq: int
    file_id: int


class DeletedEvent(TypedDict):
    type: Literal["deleted"]


class DeltaEvent(TypedDict):
    type: Literal["delta"]
    message_id: int
    offset: int
    text: str


class HelloEvent(TypedDict):
    type: Literal["hello"]
    last_seq: int


class SyncEvent(TypedDict):
    type: Literal["sync"]
    last_seq: int
    events: list[PersistedEvent]
    file_ids: list[int]  # every file the conversation holds: the others were deleted


class ErrorEvent(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    reply_to: str | None


class AckEvent(TypedDict):
    type: Literal["ack"]
    client_id: str
    message_id: int
    turn_id: int


class PongEvent(TypedDict):
    type: Literal["pong"]


class PartEvent(TypedDict):
    """A slice of the JSON text of a frame too large to go as one websocket message.
    The client joins the texts of one `id` in order and reads the frame when `last`."""

    type: Literal["part"]
    id: int
    last: bool
    text: str


PersistedEvent = (
    MessageEvent | TurnEvent | ConversationEvent | ExecutionEvent | OutputEvent | FileEvent
)
BroadcastEvent = PersistedEvent | DeltaEvent | OutputDeltaEvent | DeletedEvent | FileDeletedEvent
ServerEvent = BroadcastEvent | HelloEvent | SyncEvent | ErrorEvent | AckEvent | PongEvent


def utf16_len(text: str) -> int:
    """Length as the browser counts it, so delta offsets agree with JavaScript."""
    return len(text.encode("utf-16-le")) // 2


def encode_frames(event: Any, limit: int, part_id: int) -> list[str]:
    """The websocket messages that carry one server event: its JSON text, or when
    that is over `limit` bytes, `part` frames (id `part_id`) of at most `limit`.

    The text is pure ASCII (non-ASCII characters are escaped), and quoting it again
    inside a part at most doubles a character (a quote or a backslash), so a slice
    of half the room always fits.
    """
    text = json.dumps(event, separators=(",", ":"))
    if len(text) <= limit:
        return [text]
    step = max(1, (limit - _PART_ENVELOPE) // 2)
    slices = [text[start : start + step] for start in range(0, len(text), step)]
    return [
        json.dumps(
            {"type": "part", "id": part_id, "last": i == len(slices) - 1, "text": piece},
            separators=(",", ":"),
        )
        for i, piece in enumerate(slices)
    ]


_PART_ENVELOPE = 80  # the part frame around its text: type, a 20-digit id, last


def error_event(code: str, message: str, reply_to: str | None = None) -> ErrorEvent:
    return {"type": "error", "code": code, "message": message, "reply_to": reply_to}


# --- client -> server -------------------------------------------------------


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserMessageFrame(_Frame):
    type: Literal["user_message"]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    client_id: Annotated[str, StringConstraints(max_length=64)] = ""


class ResumeFrame(_Frame):
    type: Literal["resume"]
    after_seq: Annotated[int, Field(ge=0)]


class RetryFrame(_Frame):
    type: Literal["retry"]
    turn_id: int


class RunCellFrame(_Frame):
    """Run code in the conversation's kernel as a cell of the user's own."""

    type: Literal["run_cell"]
    code: Annotated[str, StringConstraints(min_length=1)]
    client_id: Annotated[str, StringConstraints(max_length=64)] = ""


class EditMessageFrame(_Frame):
    """Replace the last question with `text` and answer it again."""

    type: Literal["edit_message"]
    message_id: int
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    client_id: Annotated[str, StringConstraints(max_length=64)] = ""


class RegenerateFrame(_Frame):
    """Answer the last question (`message_id`) again."""

    type: Literal["regenerate"]
    message_id: int


class StopFrame(_Frame):
    type: Literal["stop"]


class PingFrame(_Frame):
    type: Literal["ping"]


class SetModelFrame(_Frame):
    type: Literal["set_model"]
    model: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class SetWebAccessFrame(_Frame):
    type: Literal["set_web_access"]
    on: StrictBool


ClientFrame = Annotated[
    UserMessageFrame
    | ResumeFrame
    | RetryFrame
    | RunCellFrame
    | EditMessageFrame
    | RegenerateFrame
    | StopFrame
    | PingFrame
    | SetModelFrame
    | SetWebAccessFrame,
    Field(discriminator="type"),
]
CLIENT_FRAME_TYPES = (
    "user_message",
    "resume",
    "retry",
    "run_cell",
    "edit_message",
    "regenerate",
    "stop",
    "ping",
    "set_model",
    "set_web_access",
)


def describe_validation_error(errors: list[Any]) -> str:
    """Turn pydantic's error list into one sentence a person can act on."""
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if not isinstance(p, int))
        parts.append(f"{where or 'frame'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
