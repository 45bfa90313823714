"""The CodeAct loop with fakes of its three interfaces (milliseconds per test)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from chat.agent import codeact
from chat.agent.formats import ToolCall, get_format
from chat.agent.loop import Executed, footer_for, run_agent
from chat.agent.model import Reply
from sandbox.api import ExecutionResult
from sandbox.egress import WebRequest, parse_log_line


@dataclass
class FakeModel:
    """Replays replies (text, or text and tool calls); honours the stop sequence
    the way real servers do."""

    replies: list[str | tuple[str, list[ToolCall]]]
    honour_stop: bool = True
    prompts: list[list[dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    stop_after_chunks: int | None = None

    def stream(
        self,
        messages,
        on_text,
        *,
        stop=None,
        tools=None,
        should_stop=lambda: False,
        on_start=None,
    ):
        self.prompts.append([dict(m) for m in messages])
        self.requests.append({"stop": stop, "tools": tools})
        if on_start is not None:
            on_start()
        text = self.replies.pop(0)
        calls: list[ToolCall] = []
        if isinstance(text, tuple):
            text, calls = text
        if self.honour_stop and stop:
            for marker in stop:
                if marker in text:
                    text = text[: text.index(marker)]
        reply = Reply(
            finish_reason="tool_calls" if calls else "stop",
            usage={"prompt_tokens": 3, "completion_tokens": 2},
        )
        parts = []
        for index, start in enumerate(range(0, len(text), 4)):
            if self.stop_after_chunks is not None and index >= self.stop_after_chunks:
                reply.stopped = True
                break
            chunk = text[start : start + 4]
            parts.append(chunk)
            on_text(chunk)
            if should_stop():
                reply.stopped = True
                break
        reply.text = "".join(parts)
        if not reply.stopped:
            reply.tool_calls = calls
        return reply


@dataclass
class FakeExecutor:
    results: list[ExecutionResult]
    codes: list[str] = field(default_factory=list)
    notes: list[list[str]] = field(default_factory=list)
    polls: int = 0
    stop_during: bool = False
    web: list[list[WebRequest]] = field(default_factory=list)

    def execute(self, code, on_output, poll):
        self.codes.append(code)
        result = self.results.pop(0)
        for output in result.outputs:
            on_output(output)
        self.polls += 1
        if poll() and self.stop_during:
            result.status = "interrupted"
        return Executed(
            result,
            notes=self.notes.pop(0) if self.notes else [],
            web=self.web.pop(0) if self.web else [],
        )


@dataclass
class RecordingSink:
    events: list[tuple[str, Any]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)

    def reply_started(self):
        self.events.append(("reply_started", None))

    def reply_text(self, delta):
        self.events.append(("text", delta))

    def reply_finished(self, reply, content, final):
        self.events.append(("reply_finished", (content, final)))

    def execution_started(self, code):
        self.events.append(("execution_started", code))

    def execution_output(self, output):
        self.events.append(("output", output))

    def execution_finished(self, executed, observation):
        self.events.append(("execution_finished", observation))

    def notice(self, code, text):
        self.events.append(("notice", code))
        self.notices.append((code, text))

    def kinds(self):
        return [kind for kind, _ in self.events if kind != "text"]

    def finished(self):
        return [value for kind, value in self.events if kind == "reply_finished"]

    def streamed(self):
        return "".join(value for kind, value in self.events if kind == "text")


def ok(*outputs, status="ok"):
    return ExecutionResult(status=status, execution_count=1, duration=0.01, outputs=list(outputs))


def stdout(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def run(model, executor, sink=None, **kwargs):
    sink = sink or RecordingSink()
    history = [{"role": "user", "content": "What is 2+2?"}]
    outcome = run_agent(model, history, sink, executor, **kwargs)
    return outcome, sink


def test_it_ends_the_turn_on_a_plain_answer():
    model = FakeModel(["It is 4."])
    outcome, sink = run(model, FakeExecutor([]))
    assert sink.kinds() == ["reply_started", "reply_finished"]
    assert sink.finished() == [("It is 4.", True)]
    assert not outcome.stopped and outcome.executions == 0
    assert model.prompts[0][0] == {"role": "system", "content": codeact.SYSTEM_PROMPT}


def test_it_runs_the_action_and_feeds_the_observation_back():
    model = FakeModel(["Let me check.\n<execute>\nprint(2+2)\n</execute>", "The answer is 4."])
    executor = FakeExecutor([ok(stdout("4\n"))])
    outcome, sink = run(model, executor)
    assert executor.codes == ["print(2+2)"]
    assert sink.kinds() == [
        "reply_started",
        "reply_finished",
        "execution_started",
        "output",
        "execution_finished",
        "reply_started",
        "reply_finished",
    ]
    assert sink.finished() == [
        ("Let me check.\n<execute>\nprint(2+2)\n</execute>", False),
        ("The answer is 4.", True),
    ]
    second = model.prompts[1]
    assert second[-2] == {
        "role": "assistant",
        "content": "Let me check.\n<execute>\nprint(2+2)\n</execute>",
    }
    assert second[-1] == {"role": "user", "content": "Execution Output:\n4"}
    assert outcome.executions == 1


def test_it_refines_after_an_error():
    error = {"output_type": "error", "ename": "NameError", "evalue": "x", "traceback": []}
    model = FakeModel(
        ["<execute>print(x)</execute>", "<execute>x = 3\nprint(x)</execute>", "x is 3."]
    )
    executor = FakeExecutor([ok(error, status="error"), ok(stdout("3\n"))])
    outcome, _ = run(model, executor)
    assert executor.codes == ["print(x)", "x = 3\nprint(x)"]
    assert model.prompts[1][-1]["content"] == "Execution Output:\nNameError: x"
    assert outcome.executions == 2


def test_it_cuts_a_reply_that_runs_past_its_action():
    # A server that ignores the stop sequence: the invented output is never shown or kept.
    model = FakeModel(
        ["<execute>print(1)</execute>\nExecution Output:\n1\nDone.", "Done."], honour_stop=False
    )
    executor = FakeExecutor([ok(stdout("1\n"))])
    _, sink = run(model, executor)
    assert sink.finished()[0] == ("<execute>print(1)</execute>", False)
    assert "Execution Output" not in sink.streamed()


def test_it_stops_at_the_execution_limit_with_a_notice():
    action = "<execute>print(1)</execute>"
    model = FakeModel([action, action, action])
    executor = FakeExecutor([ok(stdout("1\n")), ok(stdout("1\n"))])
    outcome, sink = run(model, executor, max_executions=2)
    assert len(executor.codes) == 2
    assert sink.kinds()[-1] == "notice"
    assert "last execution allowed" in model.prompts[2][-1]["content"]
    assert outcome.executions == 2 and not outcome.stopped


def test_it_passes_notes_and_limits_to_the_model():
    result = ok(stdout("partial\n"), status="timeout")
    result.kernel_restarted = True
    result.dropped_stream_bytes = 5000
    executor = FakeExecutor([result], notes=[["[The Python session was restarted before.]"]])
    model = FakeModel(["<execute>loop()</execute>", "It took too long."])
    run(model, executor)
    observed = model.prompts[1][-1]["content"]
    assert observed.startswith(
        "Execution Output:\n[The Python session was restarted before.]\npartial\n"
    )
    assert "time limit" in observed
    assert "variables and imports from earlier executions are lost" in observed
    assert "5,000 bytes of printed output were dropped" in observed


def test_it_tells_the_model_how_much_displayed_output_was_dropped():
    result = ok(stdout("shown\n"))
    result.dropped_display_bytes = 29_000_000
    model = FakeModel(["<execute>display(big)</execute>", "Done."])
    run(model, FakeExecutor([result]))
    observed = model.prompts[1][-1]["content"]
    assert "29,000,000 bytes of displayed output or error text were dropped" in observed


def test_it_tells_the_model_which_web_requests_were_refused_and_why():
    fetched = parse_log_line(
        "1764547200.1 172.30.0.2 GET site.test 80 200 2048 150 12 - 198.51.100.10 TCP_MISS "
        "http://site.test/table.html"
    )
    refused = parse_log_line(
        "1764547200.2 172.30.0.2 CONNECT 10.1.2.3 443 403 3900 0 0 ERR_CODEACT_PRIVATE - "
        "TCP_DENIED 10.1.2.3:443"
    )
    assert fetched is not None and refused is not None
    model = FakeModel(["<execute>fetch()</execute>", "One address was refused."])
    run(model, FakeExecutor([ok(stdout("done\n"))], web=[[fetched, refused]]))
    observed = model.prompts[1][-1]["content"]
    assert (
        "[Web requests through the proxy: 2, 1 refused by the deployment's web access policy "
        "(do not retry those):\n"
        "CONNECT https://10.1.2.3 → blocked: private address\n"
        "GET http://site.test/table.html → status 200, 2,048 bytes]"
    ) in observed


def test_the_prompt_says_whether_the_network_is_there():
    assert "no internet access" in codeact.system_prompt()
    with_web = codeact.system_prompt(web=True)
    assert "no internet access" not in with_web
    assert "can fetch web pages" in with_web and "tell the user instead of retrying" in with_web


def test_it_stops_during_generation():
    model = FakeModel(["A very long answer that keeps going"], stop_after_chunks=2)
    outcome, sink = run(model, FakeExecutor([]))
    assert outcome.stopped
    assert sink.finished() == [("A very l", False)]


def test_a_stopped_reply_runs_no_code():
    model = FakeModel(["<execute>print(1)\nprint(2)</execute>"], stop_after_chunks=3)
    executor = FakeExecutor([])
    outcome, sink = run(model, executor)
    assert outcome.stopped and executor.codes == []
    assert sink.finished() == [("<execute>pri", False)]


def test_it_stops_during_execution():
    stop = {"now": False}
    model = FakeModel(["<execute>import time; time.sleep(60)</execute>", "unused"])

    def should_stop():
        return stop["now"]

    executor = FakeExecutor([ok()], stop_during=True)
    original = executor.execute

    def execute(code, on_output, poll):
        stop["now"] = True
        return original(code, on_output, poll)

    executor.execute = execute
    outcome, sink = run(model, executor, should_stop=should_stop)
    assert outcome.stopped
    assert sink.kinds()[-1] == "execution_finished"
    assert "[The user stopped this execution.]" in sink.events[-1][1]
    assert len(model.prompts) == 1


# ---- action formats ----------------------------------------------------------------------

FENCE = get_format("fence")
TOOL = get_format("tool")


def python_call(code, call_id="call_abc"):
    return ToolCall(call_id, "python", json.dumps({"code": code}))


def test_the_default_format_is_execute():
    model = FakeModel(["<execute>print(1)</execute>", "1."])
    run(model, FakeExecutor([ok(stdout("1\n"))]))
    assert model.requests[0] == {"stop": ["</execute>"], "tools": None}


def test_a_fence_model_runs_its_first_python_block_and_answers():
    model = FakeModel(
        [
            "Let me check.\n```python\nprint(2+2)\n```\nExecution Output:\n4 (invented)",
            "The answer is 4.",
        ]
    )
    executor = FakeExecutor([ok(stdout("4\n"))])
    outcome, sink = run(model, executor, action_format=FENCE)
    assert executor.codes == ["print(2+2)"]
    assert sink.finished() == [
        ("Let me check.\n```python\nprint(2+2)\n```", False),
        ("The answer is 4.", True),
    ]
    assert "Execution Output" not in sink.streamed()  # the text after the block is dropped
    assert model.requests[0] == {"stop": None, "tools": None}
    assert model.prompts[0][0] == {"role": "system", "content": FENCE.system_prompt()}
    assert model.prompts[1][-2:] == [
        {"role": "assistant", "content": "Let me check.\n```python\nprint(2+2)\n```"},
        {"role": "user", "content": "Execution Output:\n4"},
    ]
    assert outcome.executions == 1 and not outcome.stopped


def test_a_fence_model_that_shows_other_code_is_answering():
    model = FakeModel(["Run this in a shell:\n```bash\nls -l\n```"])
    executor = FakeExecutor([])
    run(model, executor, action_format=FENCE)
    assert executor.codes == []


def test_a_fence_reply_that_ends_inside_its_block_is_closed_and_run():
    model = FakeModel(["```python\nprint(1)\n", "Done."])
    executor = FakeExecutor([ok(stdout("1\n"))])
    _, sink = run(model, executor, action_format=FENCE)
    assert executor.codes == ["print(1)"]
    assert sink.finished()[0] == ("```python\nprint(1)\n```", False)


def test_a_stopped_fence_reply_runs_no_code():
    model = FakeModel(["```python\nprint(1)\nprint(2)\n```"], stop_after_chunks=4)
    executor = FakeExecutor([])
    outcome, sink = run(model, executor, action_format=FENCE)
    assert outcome.stopped and executor.codes == []
    assert sink.finished() == [("```python\nprint(", False)]


def test_a_tool_model_calls_python_and_gets_a_tool_message_back():
    model = FakeModel([("Let me check.", [python_call("print(2+2)")]), "The answer is 4."])
    executor = FakeExecutor([ok(stdout("4\n"))])
    outcome, sink = run(model, executor, action_format=TOOL)
    assert executor.codes == ["print(2+2)"]
    assert sink.finished() == [("Let me check.", False), ("The answer is 4.", True)]
    assert model.requests[0] == {"stop": None, "tools": list(TOOL.tools)}
    call_id = "call00001"  # ours, not the model's
    assert model.prompts[1][-2:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "python", "arguments": '{"code": "print(2+2)"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "Execution Output:\n4"},
    ]
    assert outcome.executions == 1


def test_tool_call_ids_go_on_from_the_history():
    history = [
        {"role": "user", "content": "Q"},
        *TOOL.replay("", "x = 1", "Execution Output:\n", "call00001"),
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Again"},
    ]
    model = FakeModel([("", [python_call("x")]), ("", [python_call("y")]), "Done."])
    run_agent(model, history, RecordingSink(), FakeExecutor([ok(), ok()]), action_format=TOOL)
    last = model.prompts[2]
    assert [m["tool_calls"][0]["id"] for m in last if m.get("tool_calls")] == [
        "call00001",
        "call00002",
        "call00003",
    ]
    assert last[-2]["content"] is None  # a call without text


@pytest.mark.parametrize(
    "arguments", ['{"code": "print(1)"', '{"source": "print(1)"}', '{"code": ["print(1)"]}']
)
def test_malformed_tool_arguments_run_nothing_and_say_so(arguments):
    model = FakeModel([("Trying.", [ToolCall("call_1", "python", arguments)])])
    executor = FakeExecutor([])
    outcome, sink = run(model, executor, action_format=TOOL)
    assert executor.codes == []
    assert sink.finished() == [("Trying.", True)]
    ((code, text),) = sink.notices
    assert code == "malformed_action"
    assert "could not be read" in text and "no code was run" in text
    assert outcome.executions == 0 and not outcome.stopped


def test_the_last_execution_is_announced_in_the_formats_words():
    model = FakeModel([("", [python_call("print(1)")]), "Done."])
    run(model, FakeExecutor([ok(stdout("1\n"))]), action_format=TOOL, max_executions=1)
    told = model.prompts[1][-1]
    assert told["role"] == "tool"
    assert told["content"].endswith("answer now with what you have, without calling `python`.]")


def test_the_footer_is_public_for_cells_the_user_runs():
    result = ok(stdout("x\n"), status="timeout")
    result.duration = 20
    lines = footer_for(Executed(result, new_files=["out.csv"]))
    assert lines == [
        "[The execution was stopped after 20 seconds: that is the time limit for one execution.]",
        "[Files saved in /workspace: out.csv]",
    ]
