"""The CodeAct protocol: the system prompt, the action parser and observations.

Compatible with the published CodeActAgent models (trained on `<execute>`
blocks and `Execution Output:` observations) and followed by general models
from the prompt alone. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chat.agent.text import human_size, strip_ansi

OPEN_TAG = "<execute>"
CLOSE_TAG = "</execute>"
STOP_SEQUENCES = [CLOSE_TAG]
OBSERVATION_PREFIX = "Execution Output:\n"
IMAGE_PLACEHOLDER = "[An image is already displayed to the user.]"
NO_OUTPUT = "[Code executed successfully with no output.]"
MODEL_OUTPUT_LIMIT = 4000  # longer observations keep their head and tail only
MODEL_OUTPUT_KEEP = 2000

# A complete action block; the first one in a reply is the action.
ACTION_BLOCK = re.compile(r"<execute>(.*?)</execute>", re.DOTALL)
SOLUTION_TAGS = ("<solution>", "</solution>")
_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?\s*```\s*$", re.DOTALL)

# The prompt in three parts; only the middle one, how to run code, differs per
# action format (chat.agent.formats). `{block}` names one piece of code in the
# guidelines, `{solution}` invites <solution> tags (the CodeAct models' own).
_PROMPT_INTRO = """\
You are a helpful assistant that can run Python code. You have a stateful \
Python (Jupyter) environment: variables, imports and files persist between \
executions in this conversation.

"""
HOW_TO_EXECUTE = """\
To run code, put it inside <execute> and </execute>, for example:
<execute>
print("Hello World!")
</execute>
The code runs and you receive its output in a message that starts with \
"Execution Output:". Then continue: run more code, or answer."""
_PROMPT_GUIDELINES = """

Guidelines:
- Prefer running code over only showing it; check results instead of guessing.
- Do one step at a time: keep each {block} short, import packages and \
define variables before you use them, and read the output before going on.
- If the code fails, read the error, fix the cause and try again.
- Once the output gives you the answer, stop executing and answer the user \
directly and concisely.{solution}
- Plots made with matplotlib are shown to the user automatically; the output \
you receive only says that an image was displayed.
- Files the user uploads are in the working directory /workspace; save files \
you create there too, so the user can download them.
- {network} \
Available: numpy, pandas, matplotlib, scipy, seaborn, scikit-learn, sympy, \
openpyxl, requests, beautifulsoup4 and the standard library."""
SOLUTION_HINT = " You may put the final answer in <solution> and </solution>."
NO_NETWORK = "The environment has no internet access and cannot install packages."
WEB_ACCESS = (
    "The environment can fetch web pages and call web APIs over HTTP(S) (requests, "
    "urllib, pandas.read_csv(url)) through a proxy that refuses private and internal "
    "addresses and may allow only some sites. When a request is refused, the output "
    "says why: tell the user instead of retrying. It cannot install packages."
)


def base_prompt(how_to: str, block: str, solution: str = "") -> str:
    """The system prompt without the files, for one way of running code."""
    guidelines = _PROMPT_GUIDELINES.replace("{block}", block).replace("{solution}", solution)
    return _PROMPT_INTRO + how_to + guidelines.replace("{network}", NO_NETWORK)


SYSTEM_PROMPT = base_prompt(HOW_TO_EXECUTE, "<execute> block", SOLUTION_HINT)


@dataclass(frozen=True)
class Action:
    code: str
    end: int  # offset in the reply text just after the action (its closing tag)
    start: int = 0  # offset of the action's first character (its opening tag)


@dataclass(frozen=True)
class PromptFile:
    path: str
    size: int
    origin: str  # "upload" or "generated"


def close_reply(text: str) -> str:
    """Close an `<execute>` block that the stop sequence (or a cut) left open.

    Servers drop the stop sequence itself, so a reply that stopped at
    `</execute>` ends inside the block; a reply may also end in a partial tag.
    """
    opened = text.rfind(OPEN_TAG)
    if opened == -1 or text.find(CLOSE_TAG, opened) != -1:
        return text
    for cut in range(len(CLOSE_TAG) - 1, 0, -1):
        if text.endswith(CLOSE_TAG[:cut]):
            return text + CLOSE_TAG[cut:]
    return text + ("" if text.endswith("\n") else "\n") + CLOSE_TAG


def parse_action(text: str) -> Action | None:
    """The first `<execute>` block of a (closed) reply, or None for a final answer.

    The block ends at the first `</execute>`, as the stop sequence would have
    ended it, even inside a string literal. A Markdown fence around the code
    is removed; an empty block is not an action.
    """
    match = ACTION_BLOCK.search(text)
    if match is None:
        return None
    code = match.group(1)
    fenced = _FENCE.match(code)
    if fenced is not None:
        code = fenced.group(1)
    code = code.strip("\n").rstrip()
    if not code.strip():
        return None
    return Action(code=textwrap.dedent(code), end=match.end(), start=match.start())


def system_prompt(
    files: Sequence[PromptFile] = (), base: str = SYSTEM_PROMPT, web: bool = False
) -> str:
    """The system prompt, saying whether the network is there and listing the
    conversation's files with their paths."""
    if web:
        base = base.replace(NO_NETWORK, WEB_ACCESS)
    if not files:
        return base
    lines = [f"- /workspace/{f.path} ({human_size(f.size)}, {_origin(f.origin)})" for f in files]
    return base + "\n\nFiles in /workspace:\n" + "\n".join(lines)


def _origin(origin: str) -> str:
    return "uploaded by the user" if origin == "upload" else "created by your code"


def output_text(output: dict[str, Any]) -> str:
    """What the model reads for one nbformat output (images become a placeholder)."""
    kind = output.get("output_type")
    if kind == "stream":
        return str(output.get("text", ""))
    if kind == "error":
        traceback = output.get("traceback") or []
        if traceback:
            return strip_ansi("\n".join(str(line) for line in traceback)) + "\n"
        return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}\n"
    data = output.get("data") or {}
    if any(str(mime).startswith("image/") for mime in data):
        return IMAGE_PLACEHOLDER + "\n"
    if "text/plain" in data:
        return strip_ansi(str(data["text/plain"])) + "\n"
    if "text/html" in data:
        return "[HTML output is displayed to the user.]\n"
    return ""


def truncate_for_model(text: str) -> str:
    if len(text) <= MODEL_OUTPUT_LIMIT:
        return text
    dropped = len(text) - 2 * MODEL_OUTPUT_KEEP
    return (
        text[:MODEL_OUTPUT_KEEP]
        + f"\n[... {dropped:,} characters of output truncated ...]\n"
        + text[-MODEL_OUTPUT_KEEP:]
    )


def observation(
    outputs: Iterable[dict[str, Any]], notes: Sequence[str] = (), footer: Sequence[str] = ()
) -> str:
    """The `Execution Output:` message for the model.

    `notes` come before the output (e.g. the session was restarted), `footer`
    after it (timeouts, dropped output, the execution limit). Only the output
    itself is shortened; the notes always reach the model.
    """
    body = "".join(output_text(o) for o in outputs).rstrip("\n")
    body = truncate_for_model(body) if body else NO_OUTPUT
    parts = [*notes, body, *footer]
    return OBSERVATION_PREFIX + "\n".join(parts)


def user_cell_text(code: str, observation: str) -> str:
    """The user message that tells the model the user ran a cell of their own in
    the same Python session; `observation` is the cell's `Execution Output:` text."""
    fence = "`" * max(3, _longest_backtick_run(code) + 1)
    return f"I ran this code in the Python session:\n{fence}python\n{code}\n{fence}\n{observation}"


def _longest_backtick_run(text: str) -> int:
    runs = re.findall(r"`+", text)
    return max((len(run) for run in runs), default=0)
