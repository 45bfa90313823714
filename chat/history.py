"""What the model saw: its system prompt and messages, rebuilt from the rows.

One rebuild serves the worker (the prompt of the next turn) and the training
export (the trajectory a fine-tuning record holds): a reply that ran code is
followed by exactly the observation the model was given for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.db import connection

from chat.agent import codeact
from chat.agent.codeact import PromptFile
from chat.models import Execution, Message, Turn

ChatMessage = dict[str, str]  # as chat.agent.model has it (not imported: it loads the SDK)


@dataclass(frozen=True)
class Step:
    """One message as the model saw it, with the execution its code started, if any."""

    role: str
    content: str
    observation: str = ""
    execution_status: str | None = None  # None: the message ran no code
    execution_detail: str = ""


def model_messages(steps: Iterable[Step]) -> list[ChatMessage]:
    """The messages sent to the model: each reply that ran code is followed by
    the observation the model was given (or why it has none); a cell the user ran
    is a user message with its code and what it printed.

    Consecutive user messages (a cell, then a question) are joined into one: many
    chat templates require user and assistant to alternate."""
    messages: list[ChatMessage] = []
    for step in steps:
        told = (
            Execution.observation_for(
                step.observation, step.execution_status, step.execution_detail
            )
            if step.execution_status is not None
            else ""
        )
        if step.role == Message.Role.USER and told:
            _add(messages, "user", codeact.user_cell_text(step.content, told))
            continue
        _add(messages, step.role, step.content)
        if step.role == Message.Role.ASSISTANT and told:
            _add(messages, "user", told)
    return messages


def _add(messages: list[ChatMessage], role: str, content: str) -> None:
    if role == "user" and messages and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": messages[-1]["content"] + "\n\n" + content}
    else:
        messages.append({"role": role, "content": content})


# Plain SQL: both run at the start of every turn, on the way to its first token,
# where compiling the ORM queries and building model instances cost more than
# the queries themselves.
_HISTORY_SQL = """
SELECT m.role, m.content, e.observation, e.status, e.detail
FROM chat_message m LEFT JOIN chat_execution e ON e.message_id = m.id
WHERE m.conversation_id = %s AND m.id <= %s
  AND m.role <> 'notice' AND m.status NOT IN ('failed', 'streaming')
  AND m.superseded_at IS NULL AND NOT (m.code = 'cell' AND e.id IS NULL)
  AND NOT (m.role = 'assistant' AND m.content = '')
ORDER BY m.id DESC LIMIT %s
"""
_FILES_SQL = """
SELECT path, size, origin FROM chat_workspacefile
WHERE conversation_id = %s AND (%s::timestamptz IS NULL OR created_at <= %s)
ORDER BY path
"""


def history_for(turn: Turn) -> list[ChatMessage]:
    """The conversation as the model saw it, up to and including this turn's question
    (the most recent CODEACT_HISTORY_MESSAGES messages), with the cells the user ran.
    Notices, failed replies, replies still streaming and superseded questions and
    answers (the user edited the question or asked for another answer) are left out."""
    with connection.cursor() as cursor:
        cursor.execute(
            _HISTORY_SQL,
            [turn.conversation_id, turn.user_message_id, settings.CODEACT_HISTORY_MESSAGES],
        )
        rows = cursor.fetchall()
    return model_messages(
        Step(role, content, observation or "", status, detail or "")
        for role, content, observation, status, detail in reversed(rows)
    )


def system_prompt_for(
    conversation_id: UUID, as_of: datetime | None = None, web: bool = False
) -> str:
    """The system prompt, listing the conversation's files (those that existed at
    `as_of`, when given), and saying whether its sandbox has web access."""
    with connection.cursor() as cursor:
        cursor.execute(_FILES_SQL, [conversation_id, as_of, as_of])
        files = [PromptFile(path, size, origin) for path, size, origin in cursor.fetchall()]
    return codeact.system_prompt(files, web=web)
