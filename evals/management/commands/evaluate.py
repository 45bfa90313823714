"""`manage.py evaluate --model KEY --suite S`: run a task suite against a model
endpoint through the product's own loop and sandboxes, and record the results
(the review pages show them under Evaluations)."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from chat.actions.conversations import model_config
from evals import harness, stats
from evals.models import Evaluation, EvaluationRun
from evals.suites import get_suite, suite_names


class Command(BaseCommand):
    help = (
        "Run an evaluation suite against a configured model: each task is a real "
        "conversation of the 'evaluation' account, answered through the same loop, "
        "sandboxes and limits as a user's. Results: the Evaluations review page."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, help="the model's key in CODEACT_MODELS")
        parser.add_argument("--suite", required=True, choices=suite_names())
        parser.add_argument(
            "--formats",
            nargs="+",
            metavar="FORMAT",
            help=(
                "action formats to compare: code (the model's own way of running code), "
                "call (one function per OpenAI tool call), text (one 'Action: f(...)' line); "
                "call and text only for the tools suite. Default: code, and all three for tools."
            ),
        )
        parser.add_argument("--repeat", type=int, default=1, help="runs of each task (default 1)")
        parser.add_argument("--concurrency", type=int, default=2, help="tasks at once (default 2)")
        parser.add_argument(
            "--tasks", nargs="+", metavar="ID", help="only these tasks of the suite"
        )
        parser.add_argument(
            "--max-executions",
            type=int,
            help="code executions allowed per task, instead of the model's own limit "
            "(one function call is one execution in the call and text formats)",
        )
        parser.add_argument("--label", default="", help="a name for this evaluation")
        parser.add_argument(
            "--task-timeout",
            type=float,
            default=harness.DEFAULT_TASK_TIMEOUT,
            help="seconds one task may take before it is stopped (default %(default)g)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        suite = get_suite(options["suite"])
        key = options["model"]
        if model_config(key)["key"] != key:
            raise CommandError(f"no model {key!r} is configured (see CODEACT_MODELS)")
        for name in ("repeat", "concurrency", "max_executions"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if options["task_timeout"] <= 0:
            raise CommandError("--task-timeout must be positive")
        default = harness.FORMATS if suite.toolbox is not None else ("code",)
        try:
            formats = harness.check_formats(suite, options["formats"] or default)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["tasks"]:
            unknown = sorted(set(options["tasks"]) - {task.id for task in suite.tasks})
            if unknown:
                raise CommandError(f"no such task in {suite.name}: {', '.join(unknown)}")
            tasks = tuple(t for t in suite.tasks if t.id in options["tasks"])
            suite = type(suite)(suite.name, suite.description, tasks, suite.toolbox)

        limit = options["max_executions"] or int(model_config(key)["max_executions"])
        longest = max((len(task.calls) for task in suite.tasks), default=0)
        if longest > limit and set(formats) & set(harness.FUNCTION_FORMATS):
            self.stderr.write(
                f"Note: {limit} executions are allowed per task, and some tasks need up to "
                f"{longest} calls in the call and text formats (one call per execution): "
                f"those cannot be solved in those formats. --max-executions {longest} "
                "gives them room."
            )
        evaluation = harness.start_evaluation(
            key,
            suite,
            formats,
            repeat=options["repeat"],
            concurrency=options["concurrency"],
            label=options["label"],
            started_by="manage.py evaluate",
            max_executions=options["max_executions"],
        )
        jobs = harness.jobs_of(suite, formats, options["repeat"])
        self.stdout.write(
            f"Evaluation {evaluation.pk}: {suite.name} ({len(suite.tasks)} tasks) x "
            f"{', '.join(formats)} x {options['repeat']} = {len(jobs)} runs of "
            f"{evaluation.model_name} at {evaluation.endpoint}, {options['concurrency']} at a time"
        )
        started = time.monotonic()
        bar = tqdm(total=len(jobs), unit="task", file=sys.stderr, dynamic_ncols=True)
        solved = 0

        def ended(run: EvaluationRun) -> None:
            nonlocal solved
            solved += run.success
            bar.set_postfix_str(f"solved {solved}", refresh=False)
            bar.update(1)
            if not run.success:
                bar.write(f"  {run.task} [{run.action_format}]: {run.error_class} {run.verdict}")

        evaluator = harness.Evaluator(evaluation, suite, options["task_timeout"], on_run=ended)
        try:
            evaluator.run(jobs)
        except KeyboardInterrupt:
            bar.close()
            self.stderr.write(f"Stopped: evaluation {evaluation.pk} keeps the runs that finished.")
            raise SystemExit(130) from None
        finally:
            bar.close()
        self._report(evaluation, time.monotonic() - started)

    def _report(self, evaluation: Evaluation, took: float) -> None:
        runs = list(evaluation.runs.all())
        self.stdout.write("")
        self.stdout.write(
            f"{'format':<8}{'solved':>9}{'rate':>7}{'95% CI':>11}"
            f"{'turns':>7}{'tokens':>9}{'time':>8}"
        )
        for summary in stats.summarize(evaluation.formats, runs):
            self.stdout.write(
                f"{summary.format:<8}{summary.fraction:>9}{summary.rate_text:>7}"
                f"{summary.interval_text:>11}{_number(summary.mean_turns, 1):>7}"
                f"{_number(summary.mean_tokens, 0):>9}{_number(summary.mean_wall_time, 1, 's'):>8}"
            )
        self.stdout.write("")
        self.stdout.write(
            f"Evaluation {evaluation.pk} {evaluation.get_status_display().lower()} in "
            f"{took:.1f} s; review it at /review/evaluations/{evaluation.pk}/"
        )


def _number(value: float | None, digits: int, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{unit}"
