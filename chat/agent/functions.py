"""Actions that call one named function instead of running code the model wrote:
the `call` format (OpenAI function calling, one tool per function) and the `text`
format (one `Action: name(arguments)` line of plain text). The paper's JSON and
text baselines; the evaluation compares them with code on the same tasks.

Each call becomes a two-line cell run in the conversation's kernel, importing the
function from its module in /workspace and calling it with literal arguments,
so it runs in the same sandbox, under the same limits, as code would. The cell
is also the record: `call_of` reads the call back from it. Pure, no I/O.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chat.agent.codeact import Action, PromptFile
from chat.agent.formats import (
    FORMATS,
    ActionFormat,
    ChatMessage,
    ReplyWatch,
    ToolCall,
    get_format,
    tool_call_replay,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]  # a JSON schema of an object: properties, required
    signature: str  # as Python writes it, e.g. "find_flights(origin: str, day: str) -> list"


@dataclass(frozen=True)
class Functions:
    """The functions a model may call, and the module in /workspace that has them."""

    module: str
    specs: tuple[FunctionSpec, ...]

    def named(self, name: str) -> FunctionSpec | None:
        return next((spec for spec in self.specs if spec.name == name), None)

    def names(self) -> str:
        return ", ".join(f"'{spec.name}'" for spec in self.specs) or "none"


NO_FUNCTIONS = Functions("functions", ())


def call_code(module: str, name: str, arguments: Mapping[str, Any]) -> str:
    """The cell that makes one call; its value is the cell's result."""
    if not _NAME.fullmatch(module) or not _NAME.fullmatch(name):
        raise ValueError(f"not a Python name: {module}.{name}")
    args = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
    return f"from {module} import {name}\n{name}({args})"


def call_of(code: str) -> tuple[str, dict[str, Any]] | None:
    """The function and arguments of a cell `call_code` wrote; None for other code."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    if len(tree.body) != 2 or not isinstance(tree.body[1], ast.Expr):
        return None
    call = tree.body[1].value
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.args:
        return None
    try:
        arguments = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except ValueError:
        return None
    return call.func.id, arguments


def _literal_call(expression: str, functions: Functions) -> tuple[str, dict[str, Any]] | str:
    """`name(a=1, b="x")` (or positional literals, matched to the parameters in
    order) read from text: the call, or why it cannot be made."""
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return "it is not a function call in Python syntax"
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return "it is not a call of a function by its name"
    spec = functions.named(node.func.id)
    if spec is None:
        return f"there is no function '{node.func.id}' (the functions are {functions.names()})"
    order = list((spec.parameters.get("properties") or {}).keys())
    if len(node.args) > len(order):
        return f"'{spec.name}' takes at most {len(order)} arguments"
    try:
        arguments = {order[i]: ast.literal_eval(arg) for i, arg in enumerate(node.args)}
        for keyword in node.keywords:
            if keyword.arg is None:
                return "arguments must be written out, not unpacked with **"
            arguments[keyword.arg] = ast.literal_eval(keyword.value)
    except ValueError:
        return "its arguments must be literal values (strings, numbers, lists, dicts)"
    return spec.name, arguments


class _FunctionFormat(ActionFormat):
    """What the two function formats share: the functions, and a prompt that offers
    them instead of a Python environment (the files in /workspace are the
    functions' own business, so they are not listed)."""

    solution = ""
    stop = ()

    def __init__(self, functions: Functions = NO_FUNCTIONS) -> None:
        self.functions = functions

    @property
    def base_prompt(self) -> str:
        return function_prompt(self.how_to)

    def system_prompt(self, files: Sequence[PromptFile] = (), web: bool = False) -> str:
        return self.base_prompt

    def close(self, text: str) -> str:
        return text


class FunctionCallFormat(_FunctionFormat):
    """Each function is an OpenAI tool; the first call of a known function is the action."""

    name = "call"
    block = "function call"
    without_code = "without calling a function"

    how_to = (
        "To act, call one of the functions you are given as tools, one call per reply. "
        "Its result comes back as the tool's result, which starts with \"Execution "
        'Output:". Then continue: call another function, or answer.'
    )

    @property
    def tools(self) -> tuple[dict[str, Any], ...]:  # type: ignore[override]
        return tuple(
            {
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": dict(spec.parameters),
                },
            }
            for spec in self.functions.specs
        )

    def watch(self, on_text: Callable[[str], None]) -> ReplyWatch:
        return ReplyWatch(on_text)

    def _read(self, tool_calls: Sequence[ToolCall]) -> tuple[str, dict[str, Any]] | str | None:
        if not tool_calls:
            return None
        call = tool_calls[0]
        if self.functions.named(call.name) is None:
            return (
                f"The assistant called a function that does not exist ('{call.name}'; the "
                f"functions are {self.functions.names()}), so nothing was run."
            )
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return (
                f"The assistant's call of '{call.name}' could not be read (its arguments "
                "must be a JSON object), so nothing was run."
            )
        return call.name, arguments

    def parse(self, text: str, tool_calls: Sequence[ToolCall] = ()) -> Action | None:
        read = self._read(tool_calls)
        if not isinstance(read, tuple):
            return None
        code = call_code(self.functions.module, *read)
        return Action(code=code, end=len(text), start=len(text))

    def malformed(self, tool_calls: Sequence[ToolCall], text: str = "") -> str | None:
        read = self._read(tool_calls)
        return read if isinstance(read, str) else None

    def text_of(self, content: str) -> str:
        return content

    def compose(self, text: str, code: str) -> str:
        return text

    def replay(self, content: str, code: str, observation: str, call_id: str) -> list[ChatMessage]:
        call = call_of(code)
        if call is None:  # not a call (a cell of another format): shown as text
            return super().replay(content, code, observation, call_id)
        name, arguments = call
        return tool_call_replay(content, call_id, name, arguments, observation)


ACTION_PREFIX = "Action:"
_ACTION_LINE = re.compile(r"^[ \t]*Action:[ \t]*(.*?)[ \t]*$", re.MULTILINE)


class _ActionLineWatch(ReplyWatch):
    """The reply ends with its first complete `Action:` line."""

    def _cut(self, start: int) -> int | None:
        match = _ACTION_LINE.search(self.text)
        if match is None:
            return None
        newline = self.text.find("\n", match.start())
        return newline if newline != -1 else None


class TextCallFormat(_FunctionFormat):
    """One `Action: name(arguments)` line per reply, read from plain text."""

    name = "text"
    block = "action"
    without_code = "without an Action line"

    how_to = (
        "To act, call one of the functions you are given by writing one line of the form\n"
        "Action: function_name(argument=value, ...)\n"
        "with Python literals as values, one Action line per reply; the reply ends there. "
        "You receive the function's result in a message that starts with \"Execution "
        'Output:". Then continue: write another Action, or answer.'
    )

    def watch(self, on_text: Callable[[str], None]) -> ReplyWatch:
        return _ActionLineWatch(on_text)

    def _read(self, text: str) -> tuple[tuple[str, dict[str, Any]] | str, re.Match[str]] | None:
        match = _ACTION_LINE.search(text)
        if match is None:
            return None
        return _literal_call(match.group(1), self.functions), match

    def parse(self, text: str, tool_calls: Sequence[ToolCall] = ()) -> Action | None:
        read = self._read(text)
        if read is None:
            return None
        call, match = read
        if isinstance(call, str):
            return None
        code = call_code(self.functions.module, *call)
        return Action(code=code, end=match.end(), start=match.start())

    def malformed(self, tool_calls: Sequence[ToolCall], text: str = "") -> str | None:
        read = self._read(text)
        if read is None or isinstance(read[0], tuple):
            return None
        return f"The assistant's Action line could not be run: {read[0]}."

    def text_of(self, content: str) -> str:
        match = _ACTION_LINE.search(content)
        if match is None:
            return content
        return (content[: match.start()] + content[match.end() :]).strip()

    def compose(self, text: str, code: str) -> str:
        call = call_of(code)
        if call is None:
            return text
        name, arguments = call
        args = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        return (text.rstrip() + "\n" if text.strip() else "") + f"{ACTION_PREFIX} {name}({args})"

    def replay(self, content: str, code: str, observation: str, call_id: str) -> list[ChatMessage]:
        return [
            {"role": "assistant", "content": content},
            {"role": "user", "content": observation},
        ]


# The prompt of the function formats: no Python environment is offered to the model.
FUNCTIONS_INTRO = (
    "You are a helpful assistant that answers by calling functions. You are given "
    "functions that look up and change data; call them to find what you need.\n\n"
)
FUNCTIONS_GUIDELINES = """

Guidelines:
- Call one function at a time and read its result before going on.
- If a call fails, read the error, fix the arguments and try again.
- Once the results give you the answer, stop calling functions and answer directly."""


def function_prompt(how_to: str) -> str:
    return FUNCTIONS_INTRO + how_to + FUNCTIONS_GUIDELINES


FUNCTION_FORMATS = ("call", "text")
_WITHOUT_FUNCTIONS: dict[str, ActionFormat] = {
    "call": FunctionCallFormat(),
    "text": TextCallFormat(),
}


def stored_format(name: str) -> ActionFormat:
    """The format a stored reply was written in: a model's (FORMATS) or a function
    format, which replays and shows its calls without knowing the functions; rows
    from before formats (and unknown names) were all `execute`."""
    if name in _WITHOUT_FUNCTIONS:
        return _WITHOUT_FUNCTIONS[name]
    return get_format(name if name in FORMATS else "execute")
