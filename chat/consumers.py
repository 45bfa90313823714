"""The conversation websocket: authenticate, check ownership, validate, act.

Consumers stay thin. Each frame re-checks that the session is still logged in
and that its user still owns the conversation; each bad frame gets an `error`
frame and the socket stays open. A socket whose session ended (logout, password
change, deactivation) is closed with code 4401 (see chat.socket_sessions).
"""

from __future__ import annotations

import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import OperationalError, close_old_connections
from django.http import Http404
from pydantic import TypeAdapter, ValidationError

from chat import broadcast, socket_sessions
from chat.actions import quotas
from chat.actions.conversations import access_conversation, do_set_model, do_set_web_access
from chat.actions.errors import ActionError
from chat.actions.messages import (
    do_request_stop,
    do_resend,
    do_retry_turn,
    do_run_user_cell,
    do_send_user_message,
)
from chat.events import (
    CLIENT_FRAME_TYPES,
    ClientFrame,
    EditMessageFrame,
    PingFrame,
    RegenerateFrame,
    ResumeFrame,
    RetryFrame,
    RunCellFrame,
    SetModelFrame,
    SetWebAccessFrame,
    StopFrame,
    UserMessageFrame,
    describe_validation_error,
    encode_frames,
    error_event,
)
from chat.models import Conversation
from chat.serialize import events_after
from codeact_web import metrics
from codeact_web.database import is_pool_timeout

log = logging.getLogger(__name__)


# Database work of all sockets runs in this pool, not in Channels' default single
# shared thread, where one socket's queries would wait for every other socket's.
_DB_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ws-db")


def _db(fn: Any) -> Any:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            # Inside the call's own context: the wrapper's own cleanup runs
            # outside it and misses a connection opened in a pool thread.
            close_old_connections()

    return database_sync_to_async(run, thread_sensitive=False, executor=_DB_THREADS)


_frames: TypeAdapter[Any] = TypeAdapter(ClientFrame)

SESSION_ENDED_CODE = 4401  # like HTTP 401: the page says to sign in again


class SessionEnded(Exception):
    pass


class ConversationConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    conversation_id: str = ""
    group: str = ""
    session_groups: tuple[str, ...] = ()
    frames_sent = 0  # numbers the `part` frames of a large frame
    counted = False  # accepted, and so counted in the open-websockets gauge

    async def connect(self) -> None:
        self.conversation_id = str(self.scope["url_route"]["kwargs"]["conversation_id"])
        conversation = await self._access()
        if conversation is None:
            await self.close(code=4404)
            return
        self.group = broadcast.group_name(conversation.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        key = socket_sessions.session_key_of(self.scope)
        self.session_groups = (socket_sessions.user_group(conversation.owner_id),) + (
            (socket_sessions.session_group(key),) if key else ()
        )
        for group in self.session_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.counted = True
        metrics.websockets.opened()
        await self._send({"type": "hello", "last_seq": conversation.last_seq})

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' own dispatch first hops to its shared sync thread to close stale
        database connections, for every frame and every event (each token delta).
        This consumer never touches a connection on that thread: its database work
        runs in `_db`, which closes connections itself. Skipping the hop saves a
        thread round trip per message and stops every socket queueing on one thread."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            metrics.websockets.closed()
        for group in (self.group, *self.session_groups) if self.group else ():
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._send(error_event("bad_frame", "Frames must be JSON text, not binary."))
            return
        if len(text_data.encode()) > settings.CODEACT_MAX_FRAME_BYTES:
            await self._send(
                error_event(
                    "frame_too_large",
                    f"The frame is larger than {settings.CODEACT_MAX_FRAME_BYTES:,} bytes.",
                )
            )
            return
        try:
            frame = _frames.validate_json(text_data)
        except ValidationError as exc:
            await self._send(error_event("bad_frame", _explain(text_data, exc)))
            return
        try:
            replies = await _db(self._act)(frame)
        except SessionEnded:
            await self.session_ended({})
            return
        except Http404:
            await self._send(error_event("not_found", "This conversation no longer exists."))
            await self.close(code=4404)
            return
        except ActionError as exc:
            replies = [error_event(exc.code, exc.message, frame.type)]
        except OperationalError as exc:
            if not is_pool_timeout(exc):
                raise
            # Every database connection of this process stayed busy too long.
            replies = [error_event("busy", "The server is busy; try again shortly.", frame.type)]
        for reply in replies:
            await self._send(reply)

    def _act(self, frame: Any) -> list[Any]:
        """Check access and carry out one frame, in one trip to a database thread.
        Returns the frames that answer it."""
        conversation = access_conversation(self._session_user(), self.conversation_id)
        if isinstance(frame, (UserMessageFrame, RunCellFrame, EditMessageFrame)):
            if isinstance(frame, UserMessageFrame):
                message, turn = do_send_user_message(conversation, frame.text)
            elif isinstance(frame, RunCellFrame):
                message, turn = do_run_user_cell(conversation, frame.code)
            else:
                message, turn = do_resend(conversation, frame.message_id, frame.text)
            ack = {"type": "ack", "client_id": frame.client_id, "message_id": message.pk}
            return [ack | {"turn_id": turn.pk}]
        if isinstance(frame, RegenerateFrame):
            do_resend(conversation, frame.message_id)
            return []
        if isinstance(frame, ResumeFrame):
            quotas.check_resume(conversation.owner_id)  # each resync reads rows: rate-limited
            events = events_after(conversation, frame.after_seq)
            return [
                {
                    "type": "sync",
                    "last_seq": conversation.last_seq,
                    "events": events,
                    "file_ids": list(conversation.files.values_list("pk", flat=True)),
                }
            ]
        if isinstance(frame, RetryFrame):
            do_retry_turn(conversation, frame.turn_id)
        elif isinstance(frame, StopFrame):
            do_request_stop(conversation)
        elif isinstance(frame, SetModelFrame):
            do_set_model(conversation, frame.model)
        elif isinstance(frame, SetWebAccessFrame):
            do_set_web_access(conversation, frame.on)
        elif isinstance(frame, PingFrame):
            return [{"type": "pong"}]
        return []

    async def chat_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        await self._send(event)
        if event.get("type") == "deleted":
            await self.close(code=4404)

    def _session_user(self) -> Any:
        """The session's user as of now (two key lookups in this frame's trip to
        the database); SessionEnded once the session is over."""
        user = socket_sessions.current_user(self.scope)
        if not user.is_authenticated:
            raise SessionEnded
        return user

    async def session_ended(self, message: dict[str, Any]) -> None:
        await self._send(
            error_event(
                "session_ended",
                "You were signed out (logged out, password changed or account disabled). "
                "Reload the page to sign in again.",
            )
        )
        await self.close(code=SESSION_ENDED_CODE)

    async def session_check(self, message: dict[str, Any]) -> None:
        try:
            await _db(self._session_user)()
        except SessionEnded:
            await self.session_ended(message)

    async def _access(self) -> Conversation | None:
        try:
            conversation: Conversation = await _db(access_conversation)(
                self.scope["user"], self.conversation_id
            )
        except Http404:
            return None
        return conversation

    async def _send(self, event: Any) -> None:
        self.frames_sent += 1
        for text in encode_frames(event, settings.CODEACT_SEND_FRAME_BYTES, self.frames_sent):
            await self.send(text_data=text)


def _explain(text: str, exc: ValidationError) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return "The frame is not valid JSON."
    if not isinstance(data, dict) or "type" not in data:
        return "A frame must be a JSON object with a 'type'."
    if data["type"] not in CLIENT_FRAME_TYPES:
        expected = ", ".join(CLIENT_FRAME_TYPES)
        return f"Unknown frame type {str(data['type'])[:40]!r}; expected one of {expected}."
    return f"Invalid '{data['type']}' frame: {describe_validation_error(exc.errors())}"
