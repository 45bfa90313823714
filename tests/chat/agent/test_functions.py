"""The function-call action formats (`call`: OpenAI tools, `text`: Action lines):
parsing, what is malformed, the cell each call becomes, and the replay, on their
own and through the loop with fakes."""

from __future__ import annotations

import json

import pytest

from chat.agent.formats import ToolCall
from chat.agent.functions import (
    FunctionCallFormat,
    Functions,
    FunctionSpec,
    TextCallFormat,
    call_code,
    call_of,
    stored_format,
)
from chat.history import Step, model_messages
from chat.rendering import display_text
from tests.chat.agent.test_loop import FakeExecutor, FakeModel, ok, run, stdout

FLIGHTS = FunctionSpec(
    name="find_flights",
    description="Flights between two cities on a day.",
    parameters={
        "type": "object",
        "properties": {"origin": {"type": "string"}, "day": {"type": "string"}},
        "required": ["origin", "day"],
    },
    signature="find_flights(origin: str, day: str) -> list[dict]",
)
RATE = FunctionSpec(
    name="rate",
    description="An exchange rate.",
    parameters={"type": "object", "properties": {"currency": {"type": "string"}}},
    signature="rate(currency: str) -> float",
)
TRAVEL = Functions("travel", (FLIGHTS, RATE))
CALL = FunctionCallFormat(TRAVEL)
TEXT = TextCallFormat(TRAVEL)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"origin": "Oslo", "day": "2024-05-01"}, {"n": 3, "xs": [1, 2.5], "d": {"a": None}}],
)
def test_a_call_becomes_a_two_line_cell_that_reads_back(arguments):
    code = call_code("travel", "find_flights", arguments)
    assert code.splitlines()[0] == "from travel import find_flights"
    assert call_of(code) == ("find_flights", arguments)


@pytest.mark.parametrize(
    "code",
    [
        "print(1)",
        "from travel import f\nf(1)",  # positional: not what call_code writes
        "from travel import f\nf(x=open('a'))",  # not a literal
        "from travel import f\nx = f()",
        "def (",
    ],
)
def test_other_code_is_not_a_call(code):
    assert call_of(code) is None


def test_names_that_are_not_python_are_refused():
    with pytest.raises(ValueError):
        call_code("travel; import os", "f", {})


def test_each_function_is_a_tool_and_the_first_known_call_is_the_action():
    assert [tool["function"]["name"] for tool in CALL.tools] == ["find_flights", "rate"]
    assert CALL.tools[0]["function"]["parameters"]["required"] == ["origin", "day"]
    calls = [
        ToolCall("c1", "find_flights", '{"origin": "Oslo", "day": "2024-05-01"}'),
        ToolCall("c2", "rate", '{"currency": "EUR"}'),  # one call per action: not run
    ]
    action = CALL.parse("Looking.", calls)
    assert action is not None
    assert call_of(action.code) == ("find_flights", {"origin": "Oslo", "day": "2024-05-01"})
    assert CALL.malformed(calls) is None


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (ToolCall("c1", "python", '{"code": "1"}'), "does not exist ('python'"),
        (ToolCall("c1", "rate", '{"currency": '), "could not be read"),
        (ToolCall("c1", "rate", '["EUR"]'), "could not be read"),
    ],
)
def test_a_call_that_cannot_run_is_malformed_and_runs_nothing(call, says):
    assert CALL.parse("", [call]) is None
    assert says in (CALL.malformed([call]) or "")


def test_the_function_prompt_offers_functions_not_a_python_environment():
    prompt = CALL.system_prompt()
    assert "calling functions" in prompt and "Python (Jupyter)" not in prompt
    assert "Action:" in TEXT.system_prompt()


def test_an_action_line_is_read_with_keyword_or_positional_literals():
    text = "I will search.\nAction: find_flights('Oslo', day=\"2024-05-01\")\n"
    action = TEXT.parse(text)
    assert action is not None
    assert call_of(action.code) == ("find_flights", {"origin": "Oslo", "day": "2024-05-01"})
    assert text[action.start : action.end].startswith("Action: find_flights(")
    assert TEXT.text_of(text) == "I will search."


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("Action: book_hotel(city='Oslo')", "no function 'book_hotel'"),
        ("Action: rate(currency=x)", "literal values"),
        ("Action: rate(", "not a function call"),
        ("Action: rate('EUR', 'USD')", "at most 1 arguments"),
        ("Action: rate(**{'currency': 'EUR'})", "written out"),
    ],
)
def test_an_action_line_that_cannot_run_says_why(line, says):
    text = f"Let me see.\n{line}\n"
    assert TEXT.parse(text) is None
    assert says in (TEXT.malformed((), text) or "")


def test_a_reply_without_an_action_line_is_an_answer():
    assert TEXT.parse("The answer is 4.") is None
    assert TEXT.malformed((), "The answer is 4.") is None


def test_the_text_watch_ends_the_reply_after_the_action_line():
    streamed: list[str] = []
    watch = TEXT.watch(streamed.append)
    pieces = ["Thinking.\nAct", "ion: rate(curr", "ency='EUR')", "\nObservation: 1.1", "\nmore"]
    for piece in pieces:
        watch(piece)
    assert watch.action_closed
    assert "".join(streamed) == "Thinking.\nAction: rate(currency='EUR')"


def test_a_call_model_runs_each_call_in_the_kernel_and_gets_tool_results():
    model = FakeModel(
        [
            ("", [ToolCall("x", "rate", '{"currency": "EUR"}')]),
            ("", [ToolCall("y", "nope", "{}")]),
        ]
    )
    executor = FakeExecutor([ok(stdout("1.1\n"))])
    outcome, sink = run(model, executor, action_format=CALL)
    assert executor.codes == ["from travel import rate\nrate(currency='EUR')"]
    assert model.requests[0]["tools"] == list(CALL.tools)
    assert model.prompts[1][-2]["tool_calls"][0]["function"] == {
        "name": "rate",
        "arguments": json.dumps({"currency": "EUR"}),
    }
    assert model.prompts[1][-1] == {
        "role": "tool",
        "tool_call_id": "call00001",
        "content": "Execution Output:\n1.1",
    }
    assert [code for code, _ in sink.notices] == ["malformed_action"]
    assert outcome.executions == 1


def test_a_text_model_runs_its_action_line_and_reads_the_output_as_a_user_message():
    model = FakeModel(["Action: rate(currency='EUR')\nObservation: made up", "It is 1.1."])
    executor = FakeExecutor([ok(stdout("1.1\n"))])
    outcome, sink = run(model, executor, action_format=TEXT)
    assert executor.codes == ["from travel import rate\nrate(currency='EUR')"]
    assert model.prompts[1][-2:] == [
        {"role": "assistant", "content": "Action: rate(currency='EUR')"},
        {"role": "user", "content": "Execution Output:\n1.1"},
    ]
    assert sink.finished()[-1] == ("It is 1.1.", True)
    assert outcome.executions == 1 and not outcome.stopped


def test_stored_function_replies_replay_and_show_without_the_functions():
    code = call_code("travel", "rate", {"currency": "EUR"})
    steps = [
        Step("user", "Q"),
        Step("assistant", "", "Execution Output:\n1.1", "ok", code=code, action_format="call"),
        Step("assistant", "It is 1.1.", action_format="call"),
    ]
    replayed = model_messages(steps, stored_format("call"))
    assert replayed[1]["tool_calls"][0]["function"]["name"] == "rate"
    assert replayed[2]["role"] == "tool"
    line = "Looking.\nAction: rate(currency='EUR')"
    assert display_text(line, "text", ran_code=True) == "Looking."
    assert stored_format("unknown").name == "execute"
