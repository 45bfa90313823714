"""Action formats, table by table: how each finds the action in a reply, where it
cuts a streamed reply, what it asks the server for, and how it replays a step."""

from __future__ import annotations

import json
import random

import pytest

from chat.agent import codeact
from chat.agent.codeact import PromptFile
from chat.agent.formats import FORMATS, ToolCall, get_format, tool_call_id

EXECUTE, FENCE, TOOL = (get_format(name) for name in FORMATS)


def python_call(arguments: str, name: str = "python", call_id: str = "call_x") -> ToolCall:
    return ToolCall(call_id, name, arguments)


def code_call(code: str) -> ToolCall:
    return python_call(json.dumps({"code": code}))


# ---- names, prompts, requests --------------------------------------------------------


def test_the_formats_are_known_by_name_only():
    assert FORMATS == ("execute", "fence", "tool")
    assert [get_format(name).name for name in FORMATS] == list(FORMATS)
    with pytest.raises(ValueError, match="execute, fence, tool"):
        get_format("xml")
    with pytest.raises(ValueError):
        get_format("")


def test_each_format_asks_the_server_for_what_it_needs():
    assert list(EXECUTE.stop) == ["</execute>"] and not EXECUTE.tools
    assert not FENCE.stop and not FENCE.tools
    assert not TOOL.stop
    (tool,) = TOOL.tools
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "python"
    assert tool["function"]["parameters"] == {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "The code to run."}},
        "required": ["code"],
    }


def test_the_execute_prompt_is_the_codeact_prompt():
    assert EXECUTE.system_prompt() == codeact.SYSTEM_PROMPT
    files = [PromptFile("a.csv", 10, "upload")]
    assert EXECUTE.system_prompt(files, web=True) == codeact.system_prompt(files, web=True)


@pytest.mark.parametrize(
    ("fmt", "says", "never"),
    [
        (FENCE, ['```python\nprint("Hello World!")\n```', "first python code block"], "<execute"),
        (TOOL, ["call the `python` tool", "`code` argument"], "<execute"),
    ],
)
def test_only_the_how_to_run_code_part_differs(fmt, says, never):
    prompt = fmt.system_prompt([PromptFile("a.csv", 10, "upload")], web=True)
    for words in says:
        assert words in prompt
    assert never not in prompt and "<solution>" not in prompt
    # the shared wording: the environment, the guidelines, the files, web access
    assert prompt.startswith("You are a helpful assistant that can run Python code.")
    assert "If the code fails, read the error" in prompt
    assert "can fetch web pages" in prompt and "no internet access" not in prompt
    assert prompt.endswith("- /workspace/a.csv (10 bytes, uploaded by the user)")
    assert "no internet access" in fmt.system_prompt()


# ---- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "reply", "code"),
    [
        (EXECUTE, "Let me see.\n<execute>\nprint(1)\n</execute>", "print(1)"),
        (EXECUTE, "```python\nprint(1)\n```", None),
        (EXECUTE, "The answer is 4.", None),
        (FENCE, "Let me see.\n```python\nprint(1)\n```", "print(1)"),
        (FENCE, "```py\nx = 1\n```", "x = 1"),
        (FENCE, "```python3\nx = 1\n```", "x = 1"),
        (FENCE, "```ipython\nx = 1\n```", "x = 1"),
        (FENCE, "```Python title=demo\nx = 1\n```", "x = 1"),
        (FENCE, "``` python\nx = 1\n```", "x = 1"),
        (FENCE, "```python\r\nx = 1\r\n```\r\nDone.", "x = 1"),  # CRLF line ends
        # a non-python fence is shown, not run; the first python one is the action
        (FENCE, "```bash\npip install x\n```", None),
        (FENCE, "```\nplain\n```", None),
        (FENCE, "```text\nnot code\n```\nThen:\n```python\nrun()\n```", "run()"),
        # a python fence inside another fence is that fence's text
        (FENCE, "````markdown\n```python\nshown()\n```\n````", None),
        # only the first python block counts
        (FENCE, "```python\na = 1\n```\n```python\nb = 2\n```", "a = 1"),
        # a closing fence may be longer, never shorter; info strings do not close
        (FENCE, "````python\ns = '```'\n```\nprint(s)\n````", "s = '```'\n```\nprint(s)"),
        (FENCE, "```python\nx = 1\n```python\ny = 2\n```", "x = 1\n```python\ny = 2"),
        # indentation (a block in a list item) is removed
        (FENCE, "1. First:\n   ```python\n   for i in range(2):\n       print(i)\n   ```",
         "for i in range(2):\n    print(i)"),
        # an unclosed block is not an action until it is closed; empty ones never are
        (FENCE, "```python\nprint(1)", None),
        (FENCE, "```python\n\n```", None),
        (FENCE, "Use <execute>print(1)</execute>", None),
        (FENCE, "Inline ```python x``` is not a block.", None),
        # tildes are not read as fences
        (FENCE, "~~~python\nx = 1\n~~~", None),
        (TOOL, "```python\nprint(1)\n```", None),
        (TOOL, "<execute>print(1)</execute>", None),
    ],
)  # fmt: skip
def test_it_finds_the_action(fmt, reply, code):
    action = fmt.parse(reply)
    assert (action.code if action else None) == code


def test_a_fenced_action_ends_with_its_closing_fence():
    reply = "Step one.\n```python\nx = 1\n```\nExecution Output:\n1 (invented)"
    action = FENCE.parse(reply)
    assert reply[: action.end] == "Step one.\n```python\nx = 1\n```"
    assert reply[action.start : action.end] == "```python\nx = 1\n```"
    assert FENCE.text_of(reply[: action.end]) == "Step one."


@pytest.mark.parametrize(
    ("calls", "code", "problem"),
    [
        ([], None, None),
        ([code_call("print(1)")], "print(1)", None),
        ([code_call("\n  x = 1\n  print(x)\n")], "x = 1\nprint(x)", None),
        # the first python call is the action
        ([python_call("{}", name="search"), code_call("a = 1"), code_call("b = 2")], "a = 1", None),
        ([python_call('{"code": "print(1)"')], None, "could not be read"),  # cut short
        ([python_call("print(1)")], None, "could not be read"),  # not JSON
        ([python_call('["print(1)"]')], None, "could not be read"),  # not an object
        ([python_call('{"code": 42}')], None, "could not be read"),  # not a string
        ([python_call('{"source": "print(1)"}')], None, "could not be read"),
        ([python_call("")], None, "could not be read"),
        ([python_call('{"code": "  "}')], None, "without any code"),
        ([python_call('{"q": "x"}', name="web_search")], None, "'web_search'"),
    ],
)
def test_a_tool_call_is_the_action_when_its_arguments_hold_code(calls, code, problem):
    action = TOOL.parse("Let me compute.", calls)
    assert (action.code if action else None) == code
    said = TOOL.malformed(calls)
    if problem is None:
        assert said is None
    else:
        assert problem in said and said.endswith(".") and said[0].isupper()
    if action is not None:
        assert action.end == len("Let me compute.")  # the text is kept whole


def test_text_formats_never_call_a_reply_malformed():
    assert EXECUTE.malformed([python_call("nonsense")]) is None
    assert FENCE.malformed([python_call("nonsense")]) is None


# ---- closing a reply that ended inside its action ---------------------------------------


@pytest.mark.parametrize(
    ("reply", "closed"),
    [
        ("```python\nprint(1)", "```python\nprint(1)\n```"),
        ("```python\nprint(1)\n", "```python\nprint(1)\n```"),
        ("```python\nprint(1)\n``", "```python\nprint(1)\n```"),
        ("```python\nprint(1)\n```", "```python\nprint(1)\n```"),
        ("````python\nprint(1)\n", "````python\nprint(1)\n````"),
        # nothing to close: closed, no block, not python, or an earlier block closed
        ("```python\nx = 1\n```\nDone.", "```python\nx = 1\n```\nDone."),
        ("The answer.", "The answer."),
        ("```bash\nls", "```bash\nls"),
        ("```python\na\n```\n```python\nb", "```python\na\n```\n```python\nb"),
    ],
)
def test_a_fence_the_reply_ended_in_is_closed(reply, closed):
    assert FENCE.close(reply) == closed
    if "python" in reply and closed.count("```") % 2 == 0:
        assert FENCE.parse(closed) is not None


def test_only_execute_closes_tags_and_tool_closes_nothing():
    assert EXECUTE.close("<execute>print(1)") == "<execute>print(1)\n</execute>"
    assert FENCE.close("<execute>print(1)") == "<execute>print(1)"
    assert TOOL.close("```python\nprint(1)") == "```python\nprint(1)"


# ---- cutting a streamed reply ----------------------------------------------------------

CUTS = [
    # (format, what the server sends, what the reply keeps)
    (
        EXECUTE,
        "Check.\n<execute>\nprint(1)\n</execute>\nExecution Output:\n1\nDone.",
        "Check.\n<execute>\nprint(1)\n</execute>",
    ),
    (EXECUTE, "No code here, ``` or </execute> alone.", "No code here, ``` or </execute> alone."),
    (
        FENCE,
        "Check.\n```python\nprint(1)\n```\nExecution Output:\n1\n```python\nprint(2)\n```\n",
        "Check.\n```python\nprint(1)\n```",
    ),
    (
        FENCE,
        "```bash\nls\n```\nand\n```python\nx = 1\n```  \nmore",
        "```bash\nls\n```\nand\n```python\nx = 1\n```  ",
    ),
    # a python fence inside a markdown fence is not the action
    (
        FENCE,
        "````md\n```python\nx\n```\n````\nDone.\n",
        "````md\n```python\nx\n```\n````\nDone.\n",
    ),
    # the closing line is only known once its newline arrives: the end is not cut
    (FENCE, "```python\nx = 1\n```", "```python\nx = 1\n```"),
    (
        TOOL,
        "I will run code.\n```python\nx\n```\nmore",
        "I will run code.\n```python\nx\n```\nmore",
    ),
]


@pytest.mark.parametrize(("fmt", "sent", "kept"), CUTS)
@pytest.mark.parametrize("seed", range(25))
def test_a_streamed_reply_is_cut_after_its_action_however_it_arrives(fmt, sent, kept, seed):
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(sent):
        size = 1 if seed == 0 else rng.randint(1, 12)
        pieces.append(sent[at : at + size])
        at += size
    forwarded: list[str] = []
    watch = fmt.watch(forwarded.append)
    stopping = watch.until(lambda: False)
    for piece in pieces:
        watch(piece)
    assert watch.text == kept
    assert "".join(forwarded) == kept  # nothing after the action ever reaches the page
    assert watch.action_closed == (kept != sent) == stopping()


def test_the_cut_stops_the_stream_or_the_user_does():
    watch = FENCE.watch(lambda _text: None)
    pressed = {"stop": False}
    until = watch.until(lambda: pressed["stop"])
    watch("```python\nx = 1\n")
    assert not until()
    pressed["stop"] = True
    assert until()


# ---- replay ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [EXECUTE, FENCE])
def test_text_formats_replay_a_step_as_the_reply_and_a_user_message(fmt):
    content = fmt.compose("Let me check.", "print(1)")
    assert fmt.parse(content).code == "print(1)"
    assert fmt.replay(content, "print(1)", "Execution Output:\n1", tool_call_id(1)) == [
        {"role": "assistant", "content": content},
        {"role": "user", "content": "Execution Output:\n1"},
    ]


def test_the_tool_format_replays_a_call_and_its_result():
    messages = TOOL.replay("Let me check.", 'print("é")', "Execution Output:\né", "call00003")
    assert messages == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call00003",
                    "type": "function",
                    "function": {"name": "python", "arguments": '{"code": "print(\\"é\\")"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call00003", "content": "Execution Output:\né"},
    ]
    (call,) = messages[0]["tool_calls"]
    assert TOOL.parse("", [ToolCall(call["id"], "python", call["function"]["arguments"])]).code
    # a call without text has no content (null), as the API has it
    assert TOOL.replay("", "x", "Execution Output:\n", "call00001")[0]["content"] is None


def test_tool_call_ids_are_ours_and_the_same_every_time():
    assert [tool_call_id(n) for n in (1, 2, 12)] == ["call00001", "call00002", "call00012"]
    assert all(len(tool_call_id(n)) == 9 and tool_call_id(n).isalnum() for n in (1, 99999))


@pytest.mark.parametrize(
    ("fmt", "content", "text"),
    [
        (EXECUTE, "Let me check.\n<execute>\nprint(1)\n</execute>", "Let me check."),
        (FENCE, "Let me check.\n```python\nprint(1)\n```", "Let me check."),
        (FENCE, "```python\nprint(1)\n```", ""),
        (TOOL, "Let me check.", "Let me check."),
    ],
)
def test_a_step_can_be_written_in_another_format(fmt, content, text):
    assert fmt.text_of(content) == text
    for other in (EXECUTE, FENCE, TOOL):
        rewritten = other.compose(text, "print(1)")
        if other is TOOL:
            assert rewritten == text
        else:
            assert other.parse(rewritten).code == "print(1)"
            assert other.text_of(rewritten) == text


def test_code_with_fences_in_it_gets_a_longer_fence():
    code = 'doc = """\n```python\nx\n```\n"""'
    content = FENCE.compose("", code)
    assert content.startswith("````python\n")
    assert FENCE.parse(content).code == code


def test_the_user_cell_message_shows_the_code_and_its_output():
    text = codeact.user_cell_text("print(2 + 2)", "Execution Output:\n4")
    assert text == (
        "I ran this code in the Python session:\n```python\nprint(2 + 2)\n```\nExecution Output:\n4"
    )
    nested = codeact.user_cell_text('s = "```"', "Execution Output:\n")
    assert nested.startswith("I ran this code in the Python session:\n````python\n")
