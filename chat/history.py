"""What the model saw: its system prompt and messages, rebuilt from the rows.

One rebuild serves the worker (the prompt of the next turn) and the training
export (the trajectory a fine-tuning record holds): a reply that ran code is
followed by exactly the observation the model was given for it, in the shape
of the action format asked for (chat.agent.formats): a user message after the
reply, or a tool message after its function call.
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
from chat.agent.formats import ActionFormat, ChatMessage, get_format, tool_call_id
from chat.agent.functions import stored_format
from chat.models import Execution, Message, Turn


@dataclass(frozen=True)
class Step:
    """One message as the model saw it, with the execution its code started, if any."""

    role: str
    content: str
    observation: str = ""
    execution_status: str | None = None  # None: the message ran no code
    execution_detail: str = ""
    code: str = ""  # the code the execution ran
    action_format: str = ""  # how the reply was written; "" (before formats): execute


def format_of(name: str) -> ActionFormat:
    """A stored reply's format; rows from before formats were all `execute`."""
    return stored_format(name)


def model_messages(
    steps: Iterable[Step], action_format: ActionFormat | str = "execute"
) -> list[ChatMessage]:
    """The messages sent to the model: each reply that ran code is followed by
    the observation the model was given (or why it has none); a cell the user ran
    is a user message with its code and what it printed.

    Replies that ran code are replayed in `action_format` (the current model's,
    or `execute` for the training export): one written in another format is
    rewritten, its text kept and its code put in this format's action.

    Consecutive user messages (a cell, then a question) are joined into one: many
    chat templates require user and assistant to alternate."""
    target = get_format(action_format) if isinstance(action_format, str) else action_format
    messages: list[ChatMessage] = []
    calls = 0  # tool calls replayed so far: their ids are call00001, call00002, …
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
        if step.role == Message.Role.ASSISTANT and told:
            calls += 1
            for message in _replay(step, target, told, tool_call_id(calls)):
                if message["role"] == "user":
                    _add(messages, "user", message["content"])
                else:
                    messages.append(message)
            continue
        _add(messages, step.role, step.content)
    return messages


def _replay(step: Step, target: ActionFormat, told: str, call_id: str) -> list[ChatMessage]:
    own = format_of(step.action_format)
    content = step.content
    if own.name != target.name:
        content = target.compose(own.text_of(content), step.code)
    return target.replay(content, step.code, told, call_id)


def _add(messages: list[ChatMessage], role: str, content: str) -> None:
    if role == "user" and messages and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": messages[-1]["content"] + "\n\n" + content}
    else:
        messages.append({"role": role, "content": content})


# Plain SQL: both run at the start of every turn, on the way to its first token,
# where compiling the ORM queries and building model instances cost more than
# the queries themselves.
_HISTORY_SQL = """
SELECT m.role, m.content, e.observation, e.status, e.detail, e.code, m.action_format
FROM chat_message m LEFT JOIN chat_execution e ON e.message_id = m.id
WHERE m.conversation_id = %s AND m.id <= %s
  AND m.role <> 'notice' AND m.status NOT IN ('failed', 'streaming')
  AND m.superseded_at IS NULL AND NOT (m.code = 'cell' AND e.id IS NULL)
  AND NOT (m.role = 'assistant' AND m.content = '' AND e.id IS NULL)
ORDER BY m.id DESC LIMIT %s
"""
_FILES_SQL = """
SELECT path, size, origin FROM chat_workspacefile
WHERE conversation_id = %s AND (%s::timestamptz IS NULL OR created_at <= %s)
ORDER BY path
"""


def history_for(turn: Turn, action_format: ActionFormat | str = "execute") -> list[ChatMessage]:
    """The conversation as the model saw it, up to and including this turn's question
    (the most recent CODEACT_HISTORY_MESSAGES messages), with the cells the user ran,
    its steps in `action_format` (the model's).
    Notices, failed replies, replies still streaming and superseded questions and
    answers (the user edited the question or asked for another answer) are left out."""
    with connection.cursor() as cursor:
        cursor.execute(
            _HISTORY_SQL,
            [turn.conversation_id, turn.user_message_id, settings.CODEACT_HISTORY_MESSAGES],
        )
        rows = cursor.fetchall()
    return model_messages(
        (
            Step(role, content, observation or "", status, detail or "", code or "", written)
            for role, content, observation, status, detail, code, written in reversed(rows)
        ),
        action_format,
    )


def system_prompt_for(
    conversation_id: UUID,
    as_of: datetime | None = None,
    web: bool = False,
    action_format: ActionFormat | str = "execute",
) -> str:
    """The system prompt in `action_format`'s words, listing the conversation's files
    (those that existed at `as_of`, when given), and saying whether its sandbox has
    web access."""
    with connection.cursor() as cursor:
        cursor.execute(_FILES_SQL, [conversation_id, as_of, as_of])
        files = [PromptFile(path, size, origin) for path, size, origin in cursor.fetchall()]
    fmt = get_format(action_format) if isinstance(action_format, str) else action_format
    return fmt.system_prompt(files, web=web)
