"""Runs a suite against a model endpoint on the product's own path.

Each task, in each action format and repetition, is a real conversation of the
evaluation account: its files are uploaded, its question is asked, and the
turn runs as a worker runs it (chat.worker.headless) — same prompt, loop,
sandbox and limits a user gets — so the numbers say how this deployment does.
The outcome is decided by the task's checker from the final answer alone.

Action formats: `code` is the model's own way of running code (execute,
fence or tool), with the toolbox module importable in /workspace; `call` and
`text` (tools suite) call one function per action, as OpenAI tools or as an
`Action:` line (chat.agent.functions).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from django.db import close_old_connections
from django.utils import timezone

from chat.actions.conversations import model_config
from chat.actions.replies import endpoint_host
from chat.agent.formats import ActionFormat, get_format
from chat.agent.functions import FunctionCallFormat, Functions, TextCallFormat
from chat.models import Conversation, Execution
from chat.worker import headless
from evals.checkers import answer_of
from evals.models import Evaluation, EvaluationRun
from evals.suite import ANSWER_INSTRUCTION, Suite, Task

log = logging.getLogger(__name__)

FORMATS = ("code", "call", "text")
FUNCTION_FORMATS = ("call", "text")
EVALUATION_USER = "evaluation"
DEFAULT_TASK_TIMEOUT = 600.0  # seconds a task may take before it is stopped


def check_formats(suite: Suite, formats: Sequence[str]) -> list[str]:
    """The formats to run, in order, each once; ValueError for one that does not apply."""
    chosen = list(dict.fromkeys(formats))
    for name in chosen:
        if name not in FORMATS:
            raise ValueError(f"unknown format {name!r}: use {', '.join(FORMATS)}")
        if name in FUNCTION_FORMATS and suite.toolbox is None:
            raise ValueError(
                f"the {suite.name} suite has no functions to call, so it runs in the "
                f"code format only (not {name!r})"
            )
    if not chosen:
        raise ValueError("no format to run")
    return chosen


def action_format_for(suite: Suite, name: str) -> ActionFormat | None:
    """The action format a task runs in; None: the model's own (`code`)."""
    if name == "code" or suite.toolbox is None:
        return None
    functions = Functions(suite.toolbox.module, suite.toolbox.functions)
    return FunctionCallFormat(functions) if name == "call" else TextCallFormat(functions)


_HOW_TO_CALL = {
    "code": (
        "These functions are defined in the Python module `{module}` in /workspace: "
        "import them in your code (`from {module} import ...`)."
    ),
    "call": "Call these functions as tools.",
    "text": "Call these functions with Action lines.",
}


def question_for(suite: Suite, task: Task, name: str) -> str:
    """The message the evaluation account sends: the task's question, the functions
    (tools suite) with how this format calls them, and how to give the answer."""
    parts = [task.question.strip()]
    if suite.toolbox is not None:
        how = _HOW_TO_CALL[name].format(module=suite.toolbox.module)
        parts.append(f"You have these functions:\n{suite.toolbox.describe()}\n{how}")
    parts.append(ANSWER_INSTRUCTION)
    return "\n\n".join(parts)


def files_for(suite: Suite, task: Task) -> dict[str, bytes]:
    """The task's files, and the toolbox module the code imports and calls run."""
    files = dict(task.files)
    if suite.toolbox is not None:
        files[f"{suite.toolbox.module}.py"] = suite.toolbox.source.encode()
    return files


def settings_of(
    model_key: str, suite: Suite, formats: Sequence[str], max_executions: int | None = None
) -> dict[str, object]:
    """What makes two evaluations comparable: the model's settings (its execution
    limit replaced by `max_executions`, when given), its own code format and a
    digest of the system prompts the formats send."""
    config = model_config(model_key)
    own = get_format(str(config.get("action_format") or "execute"))
    prompts = [(action_format_for(suite, name) or own).system_prompt() for name in formats] + [
        ANSWER_INSTRUCTION
    ]
    digest = hashlib.sha256("\n\0\n".join(prompts).encode()).hexdigest()[:16]
    return {
        "temperature": config["temperature"],
        "max_tokens": config["max_tokens"],
        "max_executions": max_executions or int(config["max_executions"]),
        "code_format": own.name,
        "prompt_digest": digest,
    }


def start_evaluation(
    model_key: str,
    suite: Suite,
    formats: Sequence[str],
    repeat: int = 1,
    concurrency: int = 1,
    label: str = "",
    started_by: str = "",
    max_executions: int | None = None,
) -> Evaluation:
    """Record an evaluation about to run (its runs are added as tasks end)."""
    config = model_config(model_key)
    if config["key"] != model_key:
        raise ValueError(f"no model {model_key!r} is configured")
    formats = check_formats(suite, formats)
    return Evaluation.objects.create(
        label=label,
        suite=suite.name,
        model_key=model_key,
        model_name=str(config["model"]),
        endpoint=endpoint_host(str(config["base_url"])),
        formats=list(formats),
        repeat=repeat,
        concurrency=concurrency,
        settings=settings_of(model_key, suite, formats, max_executions),
        task_count=len(suite.tasks),
        started_by=started_by,
    )


@dataclass(frozen=True)
class Job:
    task: Task
    action_format: str
    repetition: int


def jobs_of(suite: Suite, formats: Sequence[str], repeat: int) -> list[Job]:
    """Every run of an evaluation, one repetition after another (so stopping early
    leaves whole repetitions)."""
    return [
        Job(task, name, repetition)
        for repetition in range(repeat)
        for task in suite.tasks
        for name in formats
    ]


@dataclass(frozen=True)
class Outcome:
    success: bool
    error_class: str
    answer: str
    verdict: str


def classify(result: headless.TurnResult, task: Task, timed_out: bool) -> Outcome:
    """How a task ended, from the turn's rows; a right answer is decided by the checker."""
    turn = result.turn
    expected = task.check.expected
    if result.status in ("failed", "interrupted"):  # interrupted: its worker was lost
        code = turn.error_code
        kind = (
            EvaluationRun.ErrorClass.MODEL_ERROR
            if code.startswith("model_")
            else EvaluationRun.ErrorClass.SANDBOX_ERROR
            if code.startswith("sandbox_")
            else EvaluationRun.ErrorClass.INTERNAL
        )
        return Outcome(False, kind, "", turn.error or code)
    if timed_out:
        return Outcome(False, EvaluationRun.ErrorClass.TIMEOUT, "", "The task ran out of time.")
    if "malformed_action" in result.notices:
        return Outcome(
            False,
            EvaluationRun.ErrorClass.MALFORMED_ACTION,
            "",
            "The model's action could not be run, and it gave no answer.",
        )
    if "execution_limit" in result.notices:
        last = result.executions[-1].status if result.executions else ""
        if last == Execution.Status.ERROR:
            return Outcome(
                False,
                EvaluationRun.ErrorClass.CODE_ERROR,
                "",
                "Its code still failed when the execution limit was reached.",
            )
        return Outcome(
            False,
            EvaluationRun.ErrorClass.EXECUTION_LIMIT,
            "",
            "It reached the execution limit without answering.",
        )
    answer = answer_of(result.answer)
    if answer is None:
        return Outcome(
            False,
            EvaluationRun.ErrorClass.NO_ANSWER,
            "",
            "The final answer has no ANSWER line (or solution tags).",
        )
    verdict = task.check(answer)
    if verdict.ok:
        return Outcome(True, EvaluationRun.ErrorClass.NONE, answer, verdict.reason)
    return Outcome(False, EvaluationRun.ErrorClass.WRONG_ANSWER, answer, verdict.reason or expected)


class Evaluator:
    """Runs an evaluation's jobs, `concurrency` at a time, each in its own thread
    with its own database connection; `on_run` hears of each run as it ends."""

    def __init__(
        self,
        evaluation: Evaluation,
        suite: Suite,
        task_timeout: float = DEFAULT_TASK_TIMEOUT,
        on_run: Callable[[EvaluationRun], None] = lambda run: None,
    ) -> None:
        self.evaluation = evaluation
        self.suite = suite
        self.task_timeout = task_timeout
        self.on_run = on_run
        self.owner = headless.operator_account(EVALUATION_USER)
        self._stopping = threading.Event()
        self._running: dict[int, Conversation] = {}
        self._lock = threading.Lock()

    def run(self, jobs: Iterable[Job]) -> Evaluation:
        """Run every job (or until `stop`), then record how the evaluation ended."""
        started = time.monotonic()
        status = Evaluation.Status.DONE
        try:
            with ThreadPoolExecutor(
                max_workers=self.evaluation.concurrency, thread_name_prefix="evaluate"
            ) as threads:
                futures = [threads.submit(self._run_job, job) for job in jobs]
                try:
                    for future in as_completed(futures):
                        run = future.result()
                        if run is not None:
                            self.on_run(run)
                except BaseException:
                    status = Evaluation.Status.STOPPED
                    self.stop()
                    for future in futures:
                        future.cancel()
                    raise
        except Exception:
            status = Evaluation.Status.FAILED
            raise
        finally:
            if self._stopping.is_set() and status == Evaluation.Status.DONE:
                status = Evaluation.Status.STOPPED
            Evaluation.objects.filter(pk=self.evaluation.pk).update(
                status=status,
                finished_at=timezone.now(),
                wall_time=time.monotonic() - started,
            )
            self.evaluation.refresh_from_db()
        return self.evaluation

    def stop(self) -> None:
        """Start no more jobs, and stop the turns that run (from any thread)."""
        self._stopping.set()
        with self._lock:
            running = list(self._running.values())
        for conversation in running:
            headless.request_stop(conversation)

    def _run_job(self, job: Job) -> EvaluationRun | None:
        if self._stopping.is_set():
            return None
        try:
            return self._attempt(job)
        finally:
            close_old_connections()

    def _attempt(self, job: Job) -> EvaluationRun | None:
        suite, task = self.suite, job.task
        conversation = headless.new_conversation(
            self.owner,
            self.evaluation.model_key,
            files_for(suite, task),
            title=(
                f"Evaluation {self.evaluation.pk}: {suite.name}/{task.id} "
                f"({job.action_format}, #{job.repetition + 1})"
            ),
        )
        key = threading.get_ident()
        with self._lock:
            self._running[key] = conversation
        timed_out = threading.Event()

        def time_is_up() -> None:
            timed_out.set()
            headless.request_stop(conversation)

        timer = threading.Timer(self.task_timeout, time_is_up)
        timer.daemon = True
        timer.start()
        try:
            result = headless.run_turn(
                conversation,
                question_for(suite, task, job.action_format),
                action_format=action_format_for(suite, job.action_format),
                max_executions=int(self.evaluation.settings["max_executions"]),
            )
        finally:
            timer.cancel()
            with self._lock:
                self._running.pop(key, None)
            try:
                headless.release_sandbox(conversation, "evaluated")
            except Exception:  # the reaper removes it later; the result stands
                log.warning("could not remove the sandbox of %s", conversation.pk, exc_info=True)
        if self._stopping.is_set() and result.status == "stopped" and not timed_out.is_set():
            return None  # cut short by the operator: not a result (the conversation stays)
        outcome = classify(result, task, timed_out.is_set())
        return EvaluationRun.objects.create(
            evaluation=self.evaluation,
            task=task.id,
            action_format=job.action_format,
            repetition=job.repetition,
            conversation=conversation,
            turn=result.turn,
            success=outcome.success,
            error_class=outcome.error_class,
            answer=outcome.answer,
            expected=task.check.expected,
            verdict=outcome.verdict,
            turns=result.replies,
            executions=len(result.executions),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            wall_time=result.wall_time,
            finished_at=timezone.now(),
        )
