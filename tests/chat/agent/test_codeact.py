"""The CodeAct protocol's pure parts: closing, parsing, observations, the prompt."""

import pytest

from chat.agent import codeact
from chat.agent.codeact import PromptFile


@pytest.mark.parametrize(
    ("reply", "closed"),
    [
        # the server dropped the stop sequence: the block is closed
        (
            "Let me compute.\n<execute>\nprint(1)\n",
            "Let me compute.\n<execute>\nprint(1)\n</execute>",
        ),
        ("<execute>print(1)", "<execute>print(1)\n</execute>"),
        # a reply cut in the middle of the closing tag
        ("<execute>x = 1\n</exec", "<execute>x = 1\n</execute>"),
        ("<execute>x = 1\n</", "<execute>x = 1\n</execute>"),
        # nothing to close
        ("<execute>x = 1</execute>", "<execute>x = 1</execute>"),
        ("The answer is 4.", "The answer is 4."),
        # the last block is the open one
        (
            "<execute>a</execute> then <execute>b",
            "<execute>a</execute> then <execute>b\n</execute>",
        ),
    ],
)
def test_it_closes_an_open_action(reply, closed):
    assert codeact.close_reply(reply) == closed


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("Plain answer.", None),
        ("<execute>\nprint('hi')\n</execute>", "print('hi')"),
        # the first block is the action; later ones are ignored
        ("<execute>a = 1</execute> and <execute>b = 2</execute>", "a = 1"),
        # the first closing tag ends the block, even inside a string literal,
        # exactly as the stop sequence would have ended the reply there
        ('<execute>print("</execute>")</execute>', 'print("'),
        # an opening tag inside a string is just text in the code
        ('<execute>s = "<execute>"\nprint(s)</execute>', 's = "<execute>"\nprint(s)'),
        # empty or blank blocks are not actions
        ("<execute></execute>", None),
        ("<execute>\n   \n</execute>", None),
        # a Markdown fence inside the block is removed
        ("<execute>\n```python\nx = 2\nprint(x)\n```\n</execute>", "x = 2\nprint(x)"),
        # indentation common to all lines is removed; inner indentation kept
        (
            "<execute>\n    for i in range(2):\n        print(i)\n</execute>",
            "for i in range(2):\n    print(i)",
        ),
        # a solution is an answer, not an action
        ("<solution>42</solution>", None),
        # an unclosed block is not parsed until it is closed
        ("<execute>print(1)", None),
    ],
)
def test_it_parses_the_first_action(reply, code):
    action = codeact.parse_action(reply)
    assert (action.code if action else None) == code


def test_it_reports_where_the_action_ends():
    reply = "Step one.\n<execute>x = 1</execute>\nExecution Output: invented"
    action = codeact.parse_action(reply)
    assert reply[: action.end] == "Step one.\n<execute>x = 1</execute>"


def test_it_formats_outputs_as_an_observation():
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "hello\n"},
        {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {}},
        {
            "output_type": "display_data",
            "data": {"image/png": "iVBOR", "text/plain": "<Figure>"},
            "metadata": {},
        },
        {"output_type": "display_data", "data": {"text/html": "<table/>"}, "metadata": {}},
    ]
    text = codeact.observation(outputs)
    assert text == (
        "Execution Output:\nhello\n2\n[An image is already displayed to the user.]\n"
        "[HTML output is displayed to the user.]"
    )


def test_it_strips_terminal_colours_from_tracebacks():
    error = {
        "output_type": "error",
        "ename": "NameError",
        "evalue": "name 'x' is not defined",
        "traceback": [
            "\x1b[0;31m---------\x1b[0m",
            "\x1b[0;31mNameError\x1b[0m: name 'x' is not defined",
        ],
    }
    text = codeact.observation([error])
    assert "\x1b" not in text
    assert text.endswith("NameError: name 'x' is not defined")


def test_it_says_when_there_was_no_output():
    assert codeact.observation([]) == "Execution Output:\n" + codeact.NO_OUTPUT


def test_it_cuts_long_output_for_the_model_only():
    long = "".join(f"line {i}\n" for i in range(2000))
    outputs = [{"output_type": "stream", "name": "stdout", "text": long}]
    text = codeact.observation(outputs, notes=["[note]"], footer=["[footer]"])
    body = text.removeprefix("Execution Output:\n[note]\n").removesuffix("\n[footer]")
    assert body.startswith(long[:2000])
    assert body.endswith(long.rstrip("\n")[-2000:])
    assert "characters of output truncated" in body
    assert len(body) < 4100
    assert outputs[0]["text"] == long  # the stored output is untouched


def test_it_lists_files_in_the_system_prompt():
    prompt = codeact.system_prompt(
        [PromptFile("sales.csv", 2048, "upload"), PromptFile("out/plot.png", 10, "generated")]
    )
    assert prompt.startswith(codeact.SYSTEM_PROMPT)
    assert "- /workspace/sales.csv (2.0 KB, uploaded by the user)" in prompt
    assert "- /workspace/out/plot.png (10 bytes, created by your code)" in prompt
    assert codeact.system_prompt([]) == codeact.SYSTEM_PROMPT
