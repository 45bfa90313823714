"""Runs a claimed turn: connects the agent loop to the database and the page.

Persist first, notify second: deltas go out as they arrive (ephemeral, with
their offset), the partial text is flushed every CODEACT_FLUSH_INTERVAL, and
the finished message is saved before its event is sent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time

from django.conf import settings
from django.db import connection

from chat import actions, broadcast, live
from chat.agent import codeact
from chat.agent.codeact import PromptFile
from chat.agent.loop import Executed, run_agent
from chat.agent.model import ChatMessage, ModelError, ModelSettings, OpenAIModelClient, Reply
from chat.events import utf16_len
from chat.models import Execution, Message, Turn
from chat.workspace import ConversationSandbox
from sandbox.api import Output, SandboxError

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # Stop must close the model stream within 0.5 s


class StopWatch:
    """One thread per worker process asks the database, five times a second, which
    of the process's running turns the user stopped: one query for all of them,
    where each turn asking for itself cost five queries a second per turn. A turn
    registers here and reads its event; it still renews its own lease, so a hung
    turn thread still lets its lease run out."""

    def __init__(self, interval: float = STOP_POLL_SECONDS) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._turns: dict[int, threading.Event] = {}
        self._thread: threading.Thread | None = None

    def watch(self, turn_id: int) -> threading.Event:
        with self._lock:
            event = self._turns.setdefault(turn_id, threading.Event())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="stop-watch", daemon=True)
                self._thread.start()
        return event

    def forget(self, turn_id: int) -> None:
        with self._lock:
            self._turns.pop(turn_id, None)

    def _run(self) -> None:
        connected = failing = False
        while True:
            time.sleep(self.interval)
            with self._lock:
                ids = list(self._turns)
            try:
                if not ids:
                    if connected:  # an idle process holds no connection for this
                        connected = False
                        connection.close()
                    continue
                connected = True
                stopped = actions.stopped_turns(ids)
            except Exception as exc:  # the database went away: try again next time
                if not failing:
                    log.warning("could not check for stopped turns: %r", exc)
                failing = True
                with contextlib.suppress(Exception):
                    connection.close()
                continue
            failing = False
            with self._lock:
                for turn_id in stopped:
                    if turn_id in self._turns:
                        self._turns[turn_id].set()


stop_watch = StopWatch()


@functools.lru_cache(maxsize=32)
def model_client(config: ModelSettings) -> OpenAIModelClient:
    """One client (and connection pool) per endpoint and worker process: building
    one costs tens of milliseconds (TLS context), which every turn would pay."""
    return OpenAIModelClient(config)


def model_settings(key: str) -> ModelSettings:
    config = actions.model_config(key)
    return ModelSettings(
        base_url=config["base_url"],
        model=config["model"],
        api_key=config["api_key"],
        temperature=config["temperature"],
        max_tokens=config["max_tokens"],
        connect_timeout=settings.CODEACT_MODEL_CONNECT_TIMEOUT,
        read_timeout=float(config.get("read_timeout") or settings.CODEACT_MODEL_READ_TIMEOUT),
        retries=settings.CODEACT_MODEL_RETRIES,
        # Deltas go out at most this often anyway: no need to wake for every token.
        wake_interval=settings.CODEACT_DELTA_INTERVAL,
    )


# Plain SQL: both run at the start of every turn, on the way to its first token,
# where compiling the ORM queries and building model instances cost more than
# the queries themselves.
_HISTORY_SQL = """
SELECT m.role, m.content, e.id, e.observation, e.status, e.detail
FROM chat_message m LEFT JOIN chat_execution e ON e.message_id = m.id
WHERE m.conversation_id = %s AND m.id <= %s
  AND m.role <> 'notice' AND m.status NOT IN ('failed', 'streaming')
  AND NOT (m.role = 'assistant' AND m.content = '')
ORDER BY m.id DESC LIMIT %s
"""
_FILES_SQL = (
    "SELECT path, size, origin FROM chat_workspacefile WHERE conversation_id = %s ORDER BY path"
)


def history_for(turn: Turn) -> list[ChatMessage]:
    """The conversation as the model saw it, up to and including this turn's question:
    each reply that ran code is followed by the observation the model was given.
    Notices, failed replies and replies still streaming are left out."""
    with connection.cursor() as cursor:
        cursor.execute(
            _HISTORY_SQL,
            [turn.conversation_id, turn.user_message_id, settings.CODEACT_HISTORY_MESSAGES],
        )
        rows = cursor.fetchall()
    history: list[ChatMessage] = []
    for role, content, execution_id, observation, status, detail in reversed(rows):
        history.append({"role": role, "content": content})
        if role == Message.Role.ASSISTANT and execution_id is not None:
            history.append(
                {"role": "user", "content": Execution.observation_for(observation, status, detail)}
            )
    return history


def prompt_for(turn: Turn) -> str:
    with connection.cursor() as cursor:
        cursor.execute(_FILES_SQL, [turn.conversation_id])
        files = [PromptFile(path, size, origin) for path, size, origin in cursor.fetchall()]
    return codeact.system_prompt(files)


class TurnRunner:
    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.config = actions.model_config(turn.model)
        self.message: Message | None = None
        self.parts: list[str] = []
        self.unsent: list[str] = []  # deltas not yet published (coalesced under load)
        self.offset = 0
        self.live_bytes = 0  # UTF-8 length of the live copy in Redis
        self.last_delta = 0.0
        self.last_flush = 0.0
        self.last_renewal = time.monotonic()
        self.stop_event = threading.Event()  # the stop watch's, once the turn runs
        self.workspace = ConversationSandbox(turn, self.notice)
        self.execution: Execution | None = None
        self.pending: list[Output] = []
        self.tail = actions.StreamTail()
        self.last_output = 0.0

    # --- Sink: replies ----------------------------------------------------------

    def reply_started(self) -> None:
        # The first reply was stored when the turn was claimed, in the same transaction.
        first = getattr(self.turn, "first_reply", None)
        if first is not None:
            self.message, self.turn.first_reply = first, None  # type: ignore[attr-defined]
        else:
            self.message = actions.do_start_reply(self.turn)
        self.parts, self.unsent, self.offset, self.last_delta = [], [], 0, 0.0
        self.live_bytes = 0
        self.last_flush = time.monotonic()

    def reply_text(self, delta: str) -> None:
        assert self.message is not None
        self.parts.append(delta)
        self.unsent.append(delta)
        self._send_deltas_if_due()
        now = time.monotonic()
        if now - self.last_flush >= settings.CODEACT_FLUSH_INTERVAL:
            self.last_flush = now
            actions.flush_reply(self.message, "".join(self.parts))

    def _send_deltas_if_due(self) -> None:
        if self.unsent and time.monotonic() - self.last_delta >= settings.CODEACT_DELTA_INTERVAL:
            self._send_deltas()

    def _send_deltas(self) -> None:
        """Publish what arrived since the last delta as one frame: tokens that come
        faster than the interval (a fast model, a busy worker) share a frame."""
        if not self.unsent or self.message is None:
            return
        text, self.unsent = "".join(self.unsent), []
        self.live_bytes += len(text.encode())
        event = {
            "type": "delta",
            "message_id": self.message.pk,
            "offset": self.offset,
            "text": text,
        }
        live.append(
            self.message.pk,
            text,
            self.live_bytes,
            self._text_so_far,
            publish=broadcast.encode(self.turn.conversation_id, event),
        )
        self.offset += utf16_len(text)
        self.last_delta = time.monotonic()

    def _text_so_far(self) -> str:
        return "".join(self.parts)  # called from _send_deltas: nothing is unsent then

    def reply_finished(self, reply: Reply, content: str, final: bool) -> None:
        assert self.message is not None
        self._send_deltas()
        status = Message.Status.STOPPED if reply.stopped else Message.Status.COMPLETE
        actions.do_finish_reply(self.message, content, status, reply.usage, final=final)

    def notice(self, code: str, text: str) -> None:
        actions.do_add_notice(self.turn, code, text)

    # --- Sink: executions ---------------------------------------------------------

    def execution_started(self, code: str) -> None:
        assert self.message is not None
        self.execution = actions.do_start_execution(
            self.turn, self.message, code, self.workspace.limits()
        )
        self.workspace.execution = self.execution
        self.pending, self.tail, self.last_output = [], actions.StreamTail(), 0.0

    def execution_output(self, output: Output) -> None:
        self.pending.append(output)
        if output.get("output_type") != "stream":
            self._flush_outputs()  # images and errors go out at once
        else:
            self._flush_outputs_if_due()

    def _flush_outputs_if_due(self) -> None:
        if self.pending and time.monotonic() - self.last_output >= settings.CODEACT_OUTPUT_INTERVAL:
            self._flush_outputs()

    def _flush_outputs(self) -> None:
        if self.pending and self.execution is not None:
            batch, self.pending = self.pending, []
            actions.do_record_outputs(self.execution, batch, self.tail)
            self.last_output = time.monotonic()

    def execution_finished(self, executed: Executed, observation: str) -> None:
        assert self.execution is not None
        self._flush_outputs()
        record = self.workspace.record
        actions.do_finish_execution(
            self.execution, executed.result, observation, record.pk if record else None
        )
        self.execution = None

    # --- stop and lease -----------------------------------------------------

    def should_stop(self) -> bool:
        """Polled every ~50 ms while the turn waits on the model or on code: keeps
        the lease alive, sends coalesced output, and notices Stop."""
        now = time.monotonic()
        if now - self.last_renewal >= settings.CODEACT_TURN_LEASE_SECONDS / 3:
            self.last_renewal = now
            actions.extend_lease(self.turn)
        self._send_deltas_if_due()
        self._flush_outputs_if_due()
        return self.stop_event.is_set()

    # --- run ------------------------------------------------------------------

    def run(self) -> None:
        client = model_client(model_settings(self.turn.model))
        self.stop_event = stop_watch.watch(self.turn.pk)
        try:
            outcome = run_agent(
                client,
                history_for(self.turn),
                self,
                self.workspace,
                system_prompt=prompt_for(self.turn),
                should_stop=self.should_stop,
                max_executions=int(self.config["max_executions"]),
            )
        except ModelError as exc:
            self._fail(exc.code, exc.message)
        except SandboxError as exc:
            log.warning("turn %s: sandbox failed: %s", self.turn.pk, exc)
            if exc.permanent:
                self._fail("sandbox_limit", exc.message)
            else:
                self._fail(
                    "sandbox_unavailable",
                    f"The Python sandbox could not run the code ({exc.message}). "
                    "Press Retry to try again.",
                )
        except Exception:
            log.exception("turn %s crashed", self.turn.pk)
            self._fail(
                "internal_error", "Something went wrong while answering. Press Retry to try again."
            )
        else:
            status = Turn.Status.STOPPED if outcome.stopped else Turn.Status.DONE
            actions.do_finish_turn(self.turn, status)
        finally:
            stop_watch.forget(self.turn.pk)
            self.workspace.close()

    def _fail(self, code: str, message: str) -> None:
        if self.message is None:  # failed before the model was asked: close the stored reply
            self.message = getattr(self.turn, "first_reply", None)
        self._send_deltas()
        if self.message is not None and self.message.status == Message.Status.STREAMING:
            actions.do_finish_reply(self.message, "".join(self.parts), Message.Status.FAILED)
        if self.execution is not None:
            self._flush_outputs()
            actions.do_fail_execution(self.execution, message)
        actions.do_finish_turn(self.turn, Turn.Status.FAILED, code, message)
