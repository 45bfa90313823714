"""Runs a claimed turn: connects the agent loop to the database and the page.

Persist first, notify second: deltas go out as they arrive (ephemeral, with
their offset), the partial text is flushed every CODEACT_FLUSH_INTERVAL, and
the finished message is saved before its event is sent.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from chat import broadcast, lease, live
from chat.actions import executions, replies, turns
from chat.actions.conversations import model_config
from chat.actions.turns import Claim
from chat.agent import codeact
from chat.agent.formats import ActionFormat, get_format
from chat.agent.loop import Executed, footer_for, run_agent
from chat.agent.model import ModelError, ModelSettings, OpenAIModelClient, Reply
from chat.events import utf16_len
from chat.history import history_for, system_prompt_for
from chat.lease import LeaseLost
from chat.models import Execution, Message, Turn
from chat.worker.executor import ConversationExecutor
from chat.worker.stop_watch import Watched, stop_watch
from codeact_web import database, metrics
from sandbox.api import OnOutput, Output, SandboxError

log = logging.getLogger(__name__)

# How long a turn whose database went away waits for it, to end the turn itself.
DATABASE_OUTAGE_WAIT = 60.0
DATABASE_LOST_DETAIL = (
    "The database stopped answering while this code ran. The code may or may not have "
    "finished; it was not run again."
)


@functools.lru_cache(maxsize=32)
def model_client(config: ModelSettings) -> OpenAIModelClient:
    """One client (and connection pool) per endpoint and worker process: building
    one costs tens of milliseconds (TLS context), which every turn would pay."""
    return OpenAIModelClient(config)


def model_settings(key: str) -> ModelSettings:
    config = model_config(key)
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


class TurnRunner:
    """The agent loop's sink and executor for one claimed turn.

    `action_format` replaces the model's own (an evaluation asks for function calls)
    and `max_executions` its limit (an evaluation that compares formats); the
    replies and the turn record what was used."""

    def __init__(
        self,
        claim: Claim,
        action_format: ActionFormat | None = None,
        max_executions: int | None = None,
    ) -> None:
        self.turn = claim.turn
        self.first_reply: Message | None = claim.first_reply  # until the model starts
        self.config = model_config(self.turn.model)
        # How this model writes code (settings checked the name when they loaded).
        self.action_format = action_format or get_format(
            str(self.config.get("action_format") or "execute")
        )
        self.max_executions = max_executions or int(self.config["max_executions"])
        self.writer = replies.Writer(
            model_name=str(self.config["model"]),
            endpoint=replies.endpoint_host(str(self.config["base_url"])),
            action_format=self.action_format.name,
        )
        self.message: Message | None = None
        self.parts: list[str] = []
        self.unsent: list[str] = []  # deltas not yet published (coalesced under load)
        self.offset = 0
        self.live_bytes = 0  # UTF-8 length of the live copy in Redis
        self.last_delta = 0.0
        self.last_flush = 0.0
        self.watched = Watched()  # the stop watch's, once the turn runs
        self.executor = ConversationExecutor(self.turn, self.notice)
        self.execution: Execution | None = None
        self.pending: list[Output] = []
        self.tail = executions.StreamTail()
        self.last_output = 0.0
        self.awaiting_first_token = True
        # The model's temperature, max tokens and max executions, once it is asked.
        self.answer_settings: tuple[float, int, int] | None = None

    # --- Sink: replies ----------------------------------------------------------

    def reply_started(self) -> None:
        # The first reply was stored when the turn was claimed, in the same statement.
        if self.first_reply is not None:
            self.message, self.first_reply = self.first_reply, None
            # Kept while the request is under way, not on the way to it.
            if self.answer_settings is not None:
                turns.do_record_settings(self.turn, *self.answer_settings)
        else:
            self.message = replies.do_start_reply(self.turn)
        self.parts, self.unsent, self.offset, self.last_delta = [], [], 0, 0.0
        self.live_bytes = 0
        self.last_flush = time.monotonic()

    def reply_text(self, delta: str) -> None:
        assert self.message is not None
        self.parts.append(delta)
        self.unsent.append(delta)
        self._send_deltas_if_due()
        if self.awaiting_first_token:  # after the first delta went out: it is not held up
            self.awaiting_first_token = False
            metrics.first_token((timezone.now() - self.turn.created_at).total_seconds())
        now = time.monotonic()
        if now - self.last_flush >= settings.CODEACT_FLUSH_INTERVAL:
            self.last_flush = now
            replies.flush_reply(self.message, "".join(self.parts))

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
        replies.do_finish_reply(
            self.message,
            content,
            status,
            reply.usage,
            final=final,
            writer=self.writer,
        )

    def notice(self, code: str, text: str) -> None:
        replies.do_add_notice(self.turn, code, text)

    # --- Sink: executions ---------------------------------------------------------

    def execution_started(self, code: str) -> None:
        assert self.message is not None
        self.execution = executions.do_start_execution(
            self.turn, self.message, code, self.executor.limits()
        )
        self.pending, self.tail, self.last_output = [], executions.StreamTail(), 0.0

    def execute(self, code: str, on_output: OnOutput, poll: Callable[[], bool]) -> Executed:
        """The loop's executor: run the execution just started, in the conversation's sandbox."""
        assert self.execution is not None and self.execution.code == code
        return self.executor.execute(self.execution, on_output, poll)

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
            executions.do_record_outputs(self.execution, batch, self.tail)
            self.last_output = time.monotonic()

    def execution_finished(self, executed: Executed, observation: str) -> None:
        assert self.execution is not None
        self._flush_outputs()
        result, record = executed.result, self.executor.record
        executions.do_finish_execution(
            self.execution,
            status=result.status,
            detail=result.detail,
            execution_count=result.execution_count,
            duration=result.duration,
            kernel_restarted=result.state_lost,
            dropped={
                "stream_bytes": result.dropped_stream_bytes,
                "displays": result.dropped_displays,
                "images": result.dropped_images,
                "display_bytes": result.dropped_display_bytes,
            },
            observation=observation,
            sandbox_id=record.pk if record else None,
        )
        self.execution = None

    # --- stop and lease -----------------------------------------------------

    def should_stop(self) -> bool:
        """Polled every ~50 ms while the turn waits on the model or on code: sends
        coalesced output, and notices Stop or a lost lease."""
        self.watched.beat()
        self._send_deltas_if_due()
        self._flush_outputs_if_due()
        return self.watched.stopped()

    # --- run ------------------------------------------------------------------

    def run(self) -> None:
        self.watched = stop_watch.watch(self.turn.pk)
        try:
            with lease.fenced(self.turn):
                self._guarded(self._run_cell if self.turn.kind == Turn.Kind.CELL else self._answer)
        except LeaseLost:
            # The sweeper closed the turn (this worker stalled past its lease) and
            # the user may have asked again: write nothing more, end quietly.
            log.warning("turn %s: lease lost; its writes stop here", self.turn.pk)
        finally:
            stop_watch.forget(self.turn.pk)
            self.executor.close()

    def _answer(self) -> str:
        """The agent loop: the model answers, running code as it goes."""
        client = model_client(model_settings(self.turn.model))
        self.answer_settings = (
            client.config.temperature,
            client.config.max_tokens,
            self.max_executions,
        )
        outcome = run_agent(
            client,
            history_for(self.turn, self.action_format),
            self,
            self,
            system_prompt=system_prompt_for(
                self.turn.conversation_id,
                web=self.turn.conversation.has_web_access,
                action_format=self.action_format,
            ),
            should_stop=self.should_stop,
            max_executions=self.max_executions,
            action_format=self.action_format,
        )
        return Turn.Status.STOPPED if outcome.stopped else Turn.Status.DONE

    def _run_cell(self) -> str:
        """A cell the user runs: their message's code, in the conversation's kernel,
        streamed and stored like the assistant's cells (origin `user`), with the
        observation the model reads about it with the next question."""
        question = self.turn.user_message
        self.message = question
        self.execution = executions.do_start_execution(
            self.turn,
            question,
            question.content,
            self.executor.limits(),
            origin=Execution.Origin.USER,
        )
        self.pending, self.tail, self.last_output = [], executions.StreamTail(), 0.0
        executed = self.executor.execute(self.execution, self.execution_output, self.should_stop)
        observed = codeact.observation(
            executed.result.outputs, executed.notes, footer_for(executed)
        )
        self.execution_finished(executed, observed)
        stopped = executed.result.status == "interrupted" and self.should_stop()
        return Turn.Status.STOPPED if stopped else Turn.Status.DONE

    def _guarded(self, work: Callable[[], str]) -> None:
        """Do the turn's work and end the turn with its status, or with the reason
        it failed, in words the user can act on."""
        try:
            status = work()
        except ModelError as exc:
            metrics.model_error(exc.code)
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
        except LeaseLost:
            raise
        except (OperationalError, InterfaceError):
            log.warning("turn %s: the database went away", self.turn.pk, exc_info=True)
            self._fail_after_database_outage()
        except Exception:
            log.exception("turn %s crashed", self.turn.pk)
            self._fail(
                "internal_error", "Something went wrong while answering. Press Retry to try again."
            )
        else:
            turns.do_finish_turn(self.turn, status)

    def _fail_after_database_outage(self) -> None:
        """The database went away mid-turn (a restart, a failover) and took this
        thread's connection and the write in flight with it. Once it answers again,
        end the turn saying so. The cell that was running is `lost` (it may have
        finished; it is not run again) and output not yet stored is dropped: what
        this thread holds may no longer match the rows. If the database stays away,
        the turn's lease runs out and the sweeper ends it when it is back."""
        if not database.wait_until_reachable(DATABASE_OUTAGE_WAIT):
            log.error(
                "turn %s: the database did not come back; the sweeper will end it", self.turn.pk
            )
            return
        if self.execution is not None:
            self.pending = []
            executions.do_lose_executions(self.turn, DATABASE_LOST_DETAIL)
            self.execution = None
        self._fail(
            "database_unavailable",
            "The database stopped answering while this answer was being written; what was "
            "saved before that is kept. Press Retry to try again.",
        )

    def _fail(self, code: str, message: str) -> None:
        if self.message is None:  # failed before the model was asked: close the stored reply
            self.message, self.first_reply = self.first_reply, None
        self._send_deltas()
        if self.message is not None and self.message.status == Message.Status.STREAMING:
            replies.do_finish_reply(
                self.message,
                "".join(self.parts),
                Message.Status.FAILED,
                writer=self.writer,
            )
        if self.execution is not None:
            self._flush_outputs()
            executions.do_fail_execution(self.execution, message)
        turns.do_finish_turn(self.turn, Turn.Status.FAILED, code, message)
