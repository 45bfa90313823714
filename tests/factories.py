from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from chat.models import Conversation, Execution, Message, Output, Turn

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create:
            obj.save()


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Conversation {n}")


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def analysis_conversation(owner: Any, title: str = "Sales trend") -> Conversation:
    """A finished turn as the worker leaves it: a question, a reply that ran code
    (stdout, a PNG plot, a DataFrame, an error), and the final answer."""
    conversation = ConversationFactory(owner=owner, title=title)
    question = Message.objects.create(conversation=conversation, role="user", content="Plot it")
    turn = Turn.objects.create(conversation=conversation, user_message=question, status="done")
    step = Message.objects.create(
        conversation=conversation,
        turn=turn,
        role="assistant",
        content="Loading.\n<execute>\nprint(df.shape)\nplt.plot([1, 2])\n</execute>",
    )
    execution = Execution.objects.create(
        conversation=conversation,
        turn=turn,
        message=step,
        number=1,
        code="print(df.shape)\nplt.plot([1, 2])",
        status="ok",
        execution_count=3,
        duration=0.4,
        observation="Execution Output:\n(12, 2)\n[An image is already displayed to the user.]",
    )
    rows = [
        {"output_type": "stream", "name": "stdout", "text": "(12, 2)\n"},
        {"output_type": "display_data", "data": {"text/plain": "<Figure>"}, "image": PNG,
         "image_mime": "image/png"},
        {"output_type": "execute_result", "data": {"text/plain": "df", "text/html": "<table/>"}},
        {"output_type": "error", "data": {"ename": "KeyError", "evalue": "'x'",
         "traceback": ["\x1b[31mKeyError\x1b[0m: 'x'"]}, "text": "KeyError: 'x'"},
    ]  # fmt: skip
    for index, row in enumerate(rows):
        Output.objects.create(execution=execution, conversation=conversation, index=index, **row)
    Message.objects.create(
        conversation=conversation,
        turn=turn,
        role="assistant",
        content="Sales rose. <solution>Up 7 per month</solution>",
        final=True,
    )
    return conversation


def backdate(conversation: Conversation, days: int) -> None:
    """Make a conversation and its turns `days` days old."""
    when = timezone.now() - timedelta(days=days)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
    Turn.objects.filter(conversation=conversation).update(created_at=when)


class EvaluationFactory(factory.django.DjangoModelFactory):
    """A finished evaluation of the scripted model on the analysis suite, in the
    code and call formats; its runs come from EvaluationRunFactory."""

    class Meta:
        model = "evals.Evaluation"

    label = factory.Sequence(lambda n: f"Evaluation {n}")
    suite = "analysis"
    model_key = "default"
    model_name = "scripted"
    endpoint = "127.0.0.1:8089"
    formats = factory.LazyFunction(lambda: ["code", "call"])
    repeat = 1
    task_count = 3
    status = "done"
    settings = factory.LazyFunction(
        lambda: {
            "temperature": 0.0,
            "max_tokens": 1024,
            "max_executions": 8,
            "code_format": "execute",
            "prompt_digest": "3f2a9c1d",
        }
    )
    finished_at = factory.LazyFunction(timezone.now)
    wall_time = 42.0


class EvaluationRunFactory(factory.django.DjangoModelFactory):
    """One solved run with a conversation of its own (pass conversation=None for a
    run that never got one, success=False and an error_class for a failure)."""

    class Meta:
        model = "evals.EvaluationRun"

    evaluation = factory.SubFactory(EvaluationFactory)
    task = factory.Sequence(lambda n: f"task-{n}")
    action_format = "code"
    repetition = 0
    conversation = factory.SubFactory(
        ConversationFactory, title=factory.LazyAttribute(lambda c: f"eval {c.factory_parent.task}")
    )
    success = True
    error_class = ""
    answer = "42"
    expected = "42"
    verdict = "matches 42"
    turns = 2
    executions = 1
    prompt_tokens = 900
    completion_tokens = 100
    wall_time = 3.0
    finished_at = factory.LazyFunction(timezone.now)
