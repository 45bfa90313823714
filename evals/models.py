"""Evaluations of a model endpoint: one `Evaluation` per run of `manage.py evaluate`,
one `EvaluationRun` per task, action format and repetition. Each run is a real
conversation of the evaluation account; its replies keep the model name, the
endpoint and the action format (chat.models.Message), its turn the settings."""

from __future__ import annotations

from django.db import models

from chat.models import Conversation, Turn


class Evaluation(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        STOPPED = "stopped", "Stopped"  # interrupted (Ctrl+C) before every task ran
        FAILED = "failed", "Failed"

    label = models.CharField(max_length=200, blank=True)  # the operator's name for it
    suite = models.CharField(max_length=40)
    model_key = models.CharField(max_length=100)
    # The endpoint as configured when it ran (as on each reply it stored).
    model_name = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=200)
    formats = models.JSONField(default=list)  # "code", "call", "text", in the order run
    repeat = models.PositiveIntegerField(default=1)
    concurrency = models.PositiveIntegerField(default=1)
    # Temperature, max tokens, max executions, the model's own code format, and a
    # digest of the system prompts: what makes two evaluations comparable.
    settings = models.JSONField(default=dict, blank=True)
    task_count = models.PositiveIntegerField(default=0)  # tasks in the suite when it ran
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    wall_time = models.FloatField(null=True, blank=True)  # seconds, start to end

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        name = self.label or f"{self.model_key} on {self.suite}"
        return f"evaluation {self.pk}: {name}"


class EvaluationRun(models.Model):
    """One task in one action format: its conversation, and whether the answer was right."""

    class ErrorClass(models.TextChoices):
        NONE = "", "Solved"
        WRONG_ANSWER = "wrong_answer", "Wrong answer"
        NO_ANSWER = "no_answer", "No answer given"
        CODE_ERROR = "code_error", "Code kept failing"
        EXECUTION_LIMIT = "execution_limit", "Execution limit reached"
        MALFORMED_ACTION = "malformed_action", "Malformed action"
        MODEL_ERROR = "model_error", "Model endpoint failed"
        SANDBOX_ERROR = "sandbox_error", "Sandbox failed"
        TIMEOUT = "timeout", "Took too long"
        INTERNAL = "internal_error", "Internal error"

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="runs")
    task = models.CharField(max_length=100)  # the task's id within its suite
    action_format = models.CharField(max_length=10)  # code, call or text
    repetition = models.PositiveIntegerField(default=0)
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    turn = models.ForeignKey(
        Turn, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    success = models.BooleanField(default=False)
    error_class = models.CharField(
        max_length=20, choices=ErrorClass.choices, blank=True, default=ErrorClass.NONE
    )
    answer = models.TextField(blank=True)  # what the checker read from the final answer
    expected = models.TextField(blank=True)
    verdict = models.TextField(blank=True)  # the checker's reason, or the failure's
    turns = models.PositiveIntegerField(default=0)  # model replies
    executions = models.PositiveIntegerField(default=0)
    # None: the endpoint reported no usage for any reply of the run.
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    wall_time = models.FloatField(default=0.0)  # seconds
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation", "task", "action_format", "repetition"],
                name="evals_run_once",
            )
        ]

    def __str__(self) -> str:
        outcome = "solved" if self.success else (self.error_class or "failed")
        return f"{self.task} [{self.action_format}] {outcome}"

    @property
    def tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens
