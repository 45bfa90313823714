"""Runs a claimed turn: connects the agent loop to the database and the page.

Persist first, notify second: deltas go out as they arrive (ephemeral, with
their offset), the partial text is flushed every CODEACT_FLUSH_INTERVAL, and
the finished message is saved before its event is sent.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from chat import actions, broadcast, live
from chat.agent.loop import run_agent
from chat.agent.model import ChatMessage, ModelError, ModelSettings, OpenAIModelClient, Reply
from chat.models import Message, Turn

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # Stop must close the model stream within 0.5 s


def utf16_len(text: str) -> int:
    """Length as the browser counts it, so delta offsets agree with JavaScript."""
    return len(text.encode("utf-16-le")) // 2


def model_settings(key: str) -> ModelSettings:
    config = actions.model_config(key)
    return ModelSettings(
        base_url=config["base_url"],
        model=config["model"],
        api_key=config["api_key"],
        temperature=config["temperature"],
        max_tokens=config["max_tokens"],
        connect_timeout=settings.CODEACT_MODEL_CONNECT_TIMEOUT,
        read_timeout=settings.CODEACT_MODEL_READ_TIMEOUT,
        retries=settings.CODEACT_MODEL_RETRIES,
    )


def history_for(turn: Turn) -> list[ChatMessage]:
    """The conversation as the model sees it, up to and including this turn's question."""
    rows = (
        Message.objects.filter(conversation_id=turn.conversation_id, id__lte=turn.user_message_id)
        .exclude(status__in=[Message.Status.FAILED, Message.Status.STREAMING])
        .exclude(role=Message.Role.ASSISTANT, content="")
        .order_by("-id")[: settings.CODEACT_HISTORY_MESSAGES]
    )
    return [{"role": m.role, "content": m.content} for m in reversed(rows)]


class TurnRunner:
    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.message: Message | None = None
        self.parts: list[str] = []
        self.offset = 0
        self.last_flush = 0.0
        self.last_check = 0.0
        self.last_renewal = time.monotonic()
        self.stop_seen = False

    # --- Sink ---------------------------------------------------------------

    def reply_started(self) -> None:
        self.message = actions.do_start_reply(self.turn)
        self.parts, self.offset = [], 0
        self.last_flush = time.monotonic()

    def reply_text(self, delta: str) -> None:
        assert self.message is not None
        live.append(self.message.pk, delta)
        broadcast.publish(
            self.turn.conversation_id,
            {"type": "delta", "message_id": self.message.pk, "offset": self.offset, "text": delta},
        )
        self.parts.append(delta)
        self.offset += utf16_len(delta)
        now = time.monotonic()
        if now - self.last_flush >= settings.CODEACT_FLUSH_INTERVAL:
            self.last_flush = now
            actions.flush_reply(self.message, "".join(self.parts))

    def reply_finished(self, reply: Reply) -> None:
        assert self.message is not None
        status = Message.Status.STOPPED if reply.stopped else Message.Status.COMPLETE
        actions.do_finish_reply(self.message, "".join(self.parts), status, reply.usage)

    # --- stop and lease -----------------------------------------------------

    def should_stop(self) -> bool:
        """Polled while the turn waits on the model; also keeps the lease alive."""
        now = time.monotonic()
        if now - self.last_renewal >= settings.CODEACT_TURN_LEASE_SECONDS / 3:
            self.last_renewal = now
            actions.extend_lease(self.turn)
        if not self.stop_seen and now - self.last_check >= STOP_POLL_SECONDS:
            self.last_check = now
            self.stop_seen = actions.stop_requested(self.turn)
        return self.stop_seen

    # --- run ------------------------------------------------------------------

    def run(self) -> None:
        client = OpenAIModelClient(model_settings(self.turn.model))
        try:
            outcome = run_agent(client, history_for(self.turn), self, should_stop=self.should_stop)
        except ModelError as exc:
            self._fail(exc.code, exc.message)
        except Exception:
            log.exception("turn %s crashed", self.turn.pk)
            self._fail(
                "internal_error", "Something went wrong while answering. Press Retry to try again."
            )
        else:
            status = Turn.Status.STOPPED if outcome.stopped else Turn.Status.DONE
            actions.do_finish_turn(self.turn, status)
        finally:
            broadcast.flush()

    def _fail(self, code: str, message: str) -> None:
        if self.message is not None and self.message.status == Message.Status.STREAMING:
            actions.do_finish_reply(self.message, "".join(self.parts), Message.Status.FAILED)
        actions.do_finish_turn(self.turn, Turn.Status.FAILED, code, message)
