"""Action formats: how a model writes the code it wants to run.

- `execute`: the CodeAct tags, `<execute>…</execute>` (the published CodeAct
  models are trained on them; the request stops at the closing tag).
- `fence`: the first Markdown code block marked python (```` ```python ````,
  also `py`, `python3`, `ipython`), as general chat models write code. Servers
  do not stop there, so the reply is cut after the block's closing fence line.
- `tool`: OpenAI function calling, one tool `python` with a `code` argument.

Each format gives the system prompt's "how to run code" part, the request's
stop sequences and tools, the watcher that forwards streamed text and cuts the
reply once its action is complete, the parser, and the messages that replay a
reply that ran code (with its observation) to the model. Pure, no I/O.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from chat.agent import codeact
from chat.agent.codeact import Action, PromptFile

ChatMessage = dict[str, Any]
FORMATS = ("execute", "fence", "tool")
TOOL_NAME = "python"
PYTHON_FENCES = frozenset({"python", "py", "python3", "ipython"})


@dataclass(frozen=True)
class ToolCall:
    """One function call of a streamed reply, its arguments as the JSON text sent."""

    id: str
    name: str
    arguments: str


def tool_call_id(number: int) -> str:
    """The id of the `number`-th tool call (from 1) in the messages we send.

    Ours, not the model's, so a rebuilt history is the same every time. Nine
    letters and digits: the length some chat templates (Mistral's) insist on.
    """
    return f"call{number:05d}"


class ReplyWatch:
    """Forwards streamed text to `on_text` and keeps it, until the reply's action
    is complete; then `action_closed` is set and everything after it is dropped
    (a model that goes on would invent the output of code that has not run)."""

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.text = ""
        self.action_closed = False

    def until(self, should_stop: Callable[[], bool]) -> Callable[[], bool]:
        """The model stream ends at the action's end, or when the user stops it."""
        return lambda: self.action_closed or should_stop()

    def __call__(self, delta: str) -> None:
        if self.action_closed:
            return
        start = len(self.text)
        self.text += delta
        cut = self._cut(start)
        if cut is not None:
            self.text = self.text[:cut]
            self.action_closed = True
        if len(self.text) > start:
            self.on_text(self.text[start:])

    def _cut(self, start: int) -> int | None:
        """Where the reply ends, once `self.text[start:]` arrived; None: not yet."""
        return None


class _ExecuteWatch(ReplyWatch):
    """Servers that honour the stop sequence never send `</execute>`; for those
    that do not, the reply ends with the first block's closing tag."""

    def _cut(self, start: int) -> int | None:
        tag = codeact.CLOSE_TAG
        close = self.text.find(tag, max(0, start - len(tag)))
        if close != -1 and codeact.OPEN_TAG in self.text[:close]:
            return close + len(tag)
        return None


# ---- Markdown fences -------------------------------------------------------------------

# An opening fence line: backticks and an info string without backticks. Any
# indentation is accepted (a block inside a list item is still code to run).
_OPEN_FENCE = re.compile(r"[ \t]*(`{3,})[ \t]*([^`]*)")
_TICKS_ONLY = re.compile(r"[ \t]*(`+)[ \t\r]*")  # \r: lines that end in CRLF


@dataclass(frozen=True)
class _Block:
    """The first python block: where its opening line starts, its code, and the
    end of its closing line (-1 while it is open)."""

    start: int
    ticks: int
    code_start: int
    code_end: int = -1
    end: int = -1


class _FenceScanner:
    """Reads text a line at a time, tracking Markdown fences, until the first
    python block closes. Each line is read once, so a streamed reply costs
    linear time however it arrives."""

    def __init__(self) -> None:
        self.pos = 0  # where the next unread line starts
        self.fence: tuple[int, bool, int, int] | None = None  # ticks, python, start, code start
        self.block: _Block | None = None  # the first python block, once closed

    def feed(self, text: str, final: bool = False) -> _Block | None:
        """Read the complete lines of `text` (and, if `final`, its last line too)."""
        while self.block is None:
            newline = text.find("\n", self.pos)
            if newline == -1:
                if not final or self.pos >= len(text):
                    break
                newline = len(text)
            self._line(text, self.pos, newline)
            self.pos = newline + 1
        return self.block

    def _line(self, text: str, start: int, end: int) -> None:
        line = text[start:end]
        if self.fence is None:
            opened = _OPEN_FENCE.fullmatch(line)
            if opened is not None:
                words = opened.group(2).split()
                python = bool(words) and words[0].lower() in PYTHON_FENCES
                self.fence = (len(opened.group(1)), python, start, end + 1)
            return
        ticks, python, opened_at, code_start = self.fence
        closing = _TICKS_ONLY.fullmatch(line)
        if closing is None or len(closing.group(1)) < ticks:
            return
        self.fence = None
        if python:
            self.block = _Block(opened_at, ticks, code_start, start, end)

    def open_python(self) -> tuple[int, int] | None:
        """The python block still open at the end (its ticks and code start), if any."""
        if self.block is not None or self.fence is None or not self.fence[1]:
            return None
        return self.fence[0], self.fence[3]


class _FenceWatch(ReplyWatch):
    """The reply ends with the closing fence line of its first python block:
    once the line is complete (its newline arrived), the rest is dropped."""

    def __init__(self, on_text: Callable[[str], None]) -> None:
        super().__init__(on_text)
        self._scanner = _FenceScanner()

    def _cut(self, start: int) -> int | None:
        block = self._scanner.feed(self.text)
        return block.end if block is not None else None


def _fence_action(text: str) -> Action | None:
    block = _FenceScanner().feed(text, final=True)
    if block is None:
        return None
    code = _normalise(text[block.code_start : block.code_end])
    if code is None:
        return None
    return Action(code=code, end=block.end, start=block.start)


def _close_fence(text: str) -> str:
    """Close a python block the reply ended in (a length limit, a server that cut it)."""
    scanner = _FenceScanner()
    scanner.feed(text)  # complete lines only: the last one may be half a fence
    opened = scanner.open_python()
    if opened is None:
        return text
    ticks, _ = opened
    last = text[scanner.pos :]
    partial = _TICKS_ONLY.fullmatch(last)
    if partial is not None:  # the last line is (part of) the closing fence
        return text + "`" * max(0, ticks - len(partial.group(1)))
    return text + ("" if text.endswith("\n") or not text else "\n") + "`" * ticks


def _normalise(code: str) -> str | None:
    """Code as it runs: blank lines around it and common indentation removed; None if blank."""
    code = code.strip("\n").rstrip()
    if not code.strip():
        return None
    return textwrap.dedent(code)


def _fenced(code: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}python\n{code}\n{fence}"


# ---- the formats -----------------------------------------------------------------------


class ActionFormat:
    """How a model writes its action; `execute` unless a subclass says otherwise."""

    name: ClassVar[str] = "execute"
    how_to: ClassVar[str] = codeact.HOW_TO_EXECUTE
    block: ClassVar[str] = "<execute> block"  # one piece of code, in the guidelines
    solution: ClassVar[str] = codeact.SOLUTION_HINT
    without_code: ClassVar[str] = "without <execute>"  # "answer now …", at the limit
    stop: ClassVar[tuple[str, ...]] = tuple(codeact.STOP_SEQUENCES)
    tools: ClassVar[tuple[dict[str, Any], ...]] = ()

    @property
    def base_prompt(self) -> str:
        return codeact.base_prompt(self.how_to, self.block, self.solution)

    def system_prompt(self, files: Sequence[PromptFile] = (), web: bool = False) -> str:
        return codeact.system_prompt(files, base=self.base_prompt, web=web)

    def watch(self, on_text: Callable[[str], None]) -> ReplyWatch:
        return _ExecuteWatch(on_text)

    def close(self, text: str) -> str:
        """A finished reply (not stopped) that ends inside its action, closed."""
        return codeact.close_reply(text)

    def parse(self, text: str, tool_calls: Sequence[ToolCall] = ()) -> Action | None:
        """The reply's action (the first one), or None: the reply is an answer."""
        return codeact.parse_action(text)

    def malformed(self, tool_calls: Sequence[ToolCall], text: str = "") -> str | None:
        """Why the reply's attempt at an action could not be run, if it made one
        (`text`: the reply's text)."""
        return None

    def text_of(self, content: str) -> str:
        """A reply's text without its action (to write it in another format)."""
        action = self.parse(content)
        if action is None:
            return content
        return (content[: action.start] + content[action.end :]).rstrip()

    def compose(self, text: str, code: str) -> str:
        """The content of a reply that says `text` and then runs `code`."""
        return (text.rstrip() + "\n" if text.strip() else "") + (
            f"{codeact.OPEN_TAG}\n{code}\n{codeact.CLOSE_TAG}"
        )

    def replay(self, content: str, code: str, observation: str, call_id: str) -> list[ChatMessage]:
        """The messages of one reply that ran code, and of what its code printed."""
        return [
            {"role": "assistant", "content": content},
            {"role": "user", "content": observation},
        ]


class ExecuteFormat(ActionFormat):
    pass


class FenceFormat(ActionFormat):
    name = "fence"
    how_to = (
        "To run code, write it in a Markdown code block marked python, for example:\n"
        '```python\nprint("Hello World!")\n```\n'
        "The first python code block of your reply runs as soon as it is closed, and "
        "the rest of that reply is not read. You receive the output in a message that "
        'starts with "Execution Output:". Then continue: run more code, or answer. '
        "Code blocks in other languages are shown, not run."
    )
    block = "code block"
    solution = ""
    without_code = "without a python code block"
    stop = ()

    def watch(self, on_text: Callable[[str], None]) -> ReplyWatch:
        return _FenceWatch(on_text)

    def close(self, text: str) -> str:
        return _close_fence(text)

    def parse(self, text: str, tool_calls: Sequence[ToolCall] = ()) -> Action | None:
        return _fence_action(text)

    def compose(self, text: str, code: str) -> str:
        return (text.rstrip() + "\n" if text.strip() else "") + _fenced(code)


class ToolFormat(ActionFormat):
    name = "tool"
    how_to = (
        f"To run code, call the `{TOOL_NAME}` tool with the code in its `code` argument. "
        "The code runs and the tool's result is its output, which starts with "
        '"Execution Output:". Then continue: run more code, or answer.'
    )
    block = f"`{TOOL_NAME}` call"
    solution = ""
    without_code = f"without calling `{TOOL_NAME}`"
    stop = ()
    tools = (
        {
            "type": "function",
            "function": {
                "name": TOOL_NAME,
                "description": (
                    "Run Python code in the conversation's stateful Jupyter session "
                    "and return its output."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {"code": {"type": "string", "description": "The code to run."}},
                    "required": ["code"],
                },
            },
        },
    )

    def watch(self, on_text: Callable[[str], None]) -> ReplyWatch:
        return ReplyWatch(on_text)  # the text is only text: the call comes apart from it

    def close(self, text: str) -> str:
        return text

    def parse(self, text: str, tool_calls: Sequence[ToolCall] = ()) -> Action | None:
        call = _first_python_call(tool_calls)
        code = _tool_code(call.arguments) if call is not None else None
        normal = _normalise(code) if code is not None else None
        if normal is None:
            return None
        return Action(code=normal, end=len(text), start=len(text))

    def malformed(self, tool_calls: Sequence[ToolCall], text: str = "") -> str | None:
        if not tool_calls:
            return None
        call = _first_python_call(tool_calls)
        if call is None:
            names = ", ".join(sorted({f"'{c.name}'" for c in tool_calls}))
            return (
                f"The assistant called a tool that does not exist ({names}; the only tool "
                f"is '{TOOL_NAME}'), so no code was run."
            )
        code = _tool_code(call.arguments)
        if code is None:
            return (
                f"The assistant's call of the '{TOOL_NAME}' tool could not be read (its "
                'arguments must be a JSON object with the code as a string in "code"), '
                "so no code was run."
            )
        if _normalise(code) is None:
            return f"The assistant called the '{TOOL_NAME}' tool without any code."
        return None

    def text_of(self, content: str) -> str:
        return content

    def compose(self, text: str, code: str) -> str:
        return text

    def replay(self, content: str, code: str, observation: str, call_id: str) -> list[ChatMessage]:
        return tool_call_replay(content, call_id, TOOL_NAME, {"code": code}, observation)


def tool_call_replay(
    content: str, call_id: str, name: str, arguments: dict[str, Any], observation: str
) -> list[ChatMessage]:
    """A reply that called function `name` and the tool message with its result."""
    return [
        {
            "role": "assistant",
            "content": content or None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": json.dumps(arguments, ensure_ascii=False),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": observation},
    ]


def _first_python_call(tool_calls: Sequence[ToolCall]) -> ToolCall | None:
    return next((call for call in tool_calls if call.name == TOOL_NAME), None)


def _tool_code(arguments: str) -> str | None:
    """The `code` of a call's arguments, or None unless they are a JSON object
    with a string `code`."""
    try:
        parsed = json.loads(arguments or "")
    except ValueError:
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else None


_BY_NAME: dict[str, ActionFormat] = {
    "execute": ExecuteFormat(),
    "fence": FenceFormat(),
    "tool": ToolFormat(),
}
assert tuple(_BY_NAME) == FORMATS


def get_format(name: str) -> ActionFormat:
    """The format called `name`; ValueError for a name that is none of FORMATS."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown action format {name!r}: use one of {', '.join(FORMATS)}"
        ) from None
