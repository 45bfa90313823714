"""The model client against real HTTP: the scripted server and llama.cpp."""

import socket
import threading
import time

import pytest

from chat.agent.formats import ToolCall, get_format
from chat.agent.loop import run_agent
from chat.agent.model import (
    ModelError,
    ModelSettings,
    OpenAIModelClient,
    _Inbox,
    _sse_data,
    _ToolCalls,
)
from tests.chat.agent.test_loop import FakeExecutor, RecordingSink, ok, stdout
from tests.support.scripted_model import Script, ScriptedModelServer


@pytest.fixture
def server():
    server = ScriptedModelServer().start()
    yield server
    server.stop()


def client_for(url, **overrides):
    config = {
        "read_timeout": 1.0,
        "connect_timeout": 1.0,
        "retries": 0,
        "backoff": 0.05,
    } | overrides
    return OpenAIModelClient(ModelSettings(base_url=url, model="scripted", **config))


def collect(client, **kwargs):
    seen = []
    reply = client.stream([{"role": "user", "content": "hi"}], seen.append, **kwargs)
    return reply, seen


def test_it_streams_text_and_usage(server):
    server.push(Script(text="The answer is 4."))
    reply, seen = collect(client_for(server.url), stop=["</execute>"])
    assert "".join(seen) == reply.text == "The answer is 4."
    assert len(seen) > 1
    assert reply.finish_reason == "stop"
    assert reply.usage == {"prompt_tokens": 11, "completion_tokens": 7}
    sent = server.requests[-1]
    assert sent["stream"] is True
    assert sent["stop"] == ["</execute>"]
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


def test_it_puts_a_streamed_tool_call_together(server):
    server.push(Script(text="Let me check.", tool_code='print("2 + 2 =", 2 + 2)', pieces=7))
    tools = list(get_format("tool").tools)
    reply, seen = collect(client_for(server.url), tools=tools)
    assert "".join(seen) == reply.text == "Let me check."
    assert reply.finish_reason == "tool_calls"  # a normal end, not a cut
    assert reply.tool_calls == [
        ToolCall("call_scripted", "python", '{"code": "print(\\"2 + 2 =\\", 2 + 2)"}')
    ]
    sent = server.requests[-1]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert "stop" not in sent


def test_a_request_without_tools_sends_none(server):
    collect(client_for(server.url))
    assert "tools" not in server.requests[-1] and "tool_choice" not in server.requests[-1]


def test_a_tool_turn_against_the_server_sends_the_tool_result_back(server):
    tool = get_format("tool")
    server.push(Script(tool_code="print(6 * 7)", pieces=5), Script(text="It is 42."))
    executor = FakeExecutor([ok(stdout("42\n"))])
    history = [{"role": "user", "content": "What is 6 * 7?"}]
    outcome = run_agent(
        client_for(server.url), history, RecordingSink(), executor, action_format=tool
    )
    assert executor.codes == ["print(6 * 7)"] and outcome.executions == 1
    first, second = server.requests
    assert first["tools"] == second["tools"] == list(tool.tools)
    assert first["messages"][0] == {"role": "system", "content": tool.system_prompt()}
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call00001",
                    "type": "function",
                    "function": {"name": "python", "arguments": '{"code": "print(6 * 7)"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call00001", "content": "Execution Output:\n42"},
    ]


@pytest.mark.parametrize(
    ("deltas", "calls"),
    [
        # pieces of two calls, interleaved by index
        (
            [
                {"index": 0, "id": "a", "type": "function", "function": {"name": "python"}},
                {"index": 1, "id": "b", "function": {"name": "other", "arguments": "{"}},
                {"index": 0, "function": {"arguments": '{"code": '}},
                {"index": 1, "function": {"arguments": "}"}},
                {"index": 0, "function": {"arguments": '"x"}'}},
            ],
            [ToolCall("a", "python", '{"code": "x"}'), ToolCall("b", "other", "{}")],
        ),
        # servers that repeat the id and name in every piece, or leave out the index
        (
            [
                {"id": "a", "function": {"name": "python", "arguments": "{"}},
                {"id": "a", "function": {"name": "python", "arguments": "}"}},
                {"id": "b", "function": {"name": "python", "arguments": "[]"}},
            ],
            [ToolCall("a", "python", "{}"), ToolCall("b", "python", "[]")],
        ),
    ],
)
def test_tool_call_pieces_are_joined_by_index(deltas, calls):
    joined = _ToolCalls()
    for delta in deltas:
        joined.add(delta)
    assert joined.calls() == calls


def test_it_retries_a_refused_connection_with_backoff(server):
    url = server.url
    server.pause()
    threading.Timer(0.3, server.resume).start()
    reply, _ = collect(client_for(url, retries=4, backoff=0.2))
    assert reply.text == "Hello from the scripted model."


def test_it_reports_a_server_that_is_down_naming_it_in_the_log_only(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelError) as failed:
        collect(client_for(f"http://127.0.0.1:{port}/v1", retries=1))
    assert failed.value.code == "model_unreachable"
    assert failed.value.message == "Could not reach the model server."
    # Users see the message; the address is for the operator, in the worker's log.
    assert f"127.0.0.1:{port}" in caplog.text


@pytest.mark.parametrize(
    ("script", "code"),
    [
        (Script(status=500), "model_server_error"),
        (Script(status=401), "model_auth"),
        (Script(status=404), "model_not_found"),
        (Script(status=400), "model_rejected"),
        (Script(text="one two three four", stall_after=2, stall_seconds=5), "model_timeout"),
        (Script(text="one two three four", malformed_after=2), "model_bad_stream"),
        (Script(text="one two three four", error_after=2), "model_server_error"),
    ],
)
def test_it_turns_failures_into_one_clear_error(server, script, code):
    server.push(script)
    started = time.monotonic()
    with pytest.raises(ModelError) as failed:
        collect(client_for(server.url))
    assert failed.value.code == code
    assert failed.value.message
    assert "127.0.0.1" not in failed.value.message
    assert time.monotonic() - started < 4


def test_an_error_event_mid_reply_is_reported_with_the_servers_words(server):
    server.push(Script(text="one two three four", error_after=2))
    with pytest.raises(ModelError) as failed:
        collect(client_for(server.url))
    assert failed.value.message.endswith("in the middle of a reply: CUDA out of memory")


@pytest.mark.parametrize(
    ("lines", "events"),
    [
        (["data: {}", "", "data: [DONE]", ""], ["{}", "[DONE]"]),
        (["data:{}", ""], ["{}"]),  # the space after the colon is optional
        (["data: a", "data: b", ""], ["a\nb"]),  # one event, two data lines
        ([": keep-alive", "", "event: message", "id: 3", "data: x", ""], ["x"]),
        (["retry: 1000", "", "", "data: last"], ["last"]),  # no blank line at the end
        (["data:  two spaces", ""], [" two spaces"]),  # only the first space goes
    ],
)
def test_server_sent_events_are_read_as_the_spec_says(lines, events):
    assert list(_sse_data(lines)) == events


def test_a_dropped_stream_is_an_error_not_a_short_answer(server):
    server.push(Script(text="one two three four five", drop_after=2))
    with pytest.raises(ModelError) as failed:
        collect(client_for(server.url))
    assert failed.value.code in {"model_unreachable", "model_bad_stream"}


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (Script(text="one two three", stall_after=1, stall_seconds=10), ["one"]),
        (Script(text="one two three", first_delay=10), []),
    ],
    ids=["mid-stream", "before-first-token"],
)
def test_stop_closes_a_stalled_stream_promptly(server, script, expected):
    server.push(script)
    pressed = threading.Event()
    threading.Timer(0.3, pressed.set).start()
    started = time.monotonic()
    reply, seen = collect(client_for(server.url, read_timeout=30), should_stop=pressed.is_set)
    assert reply.stopped
    assert time.monotonic() - started < 0.3 + 0.5
    assert seen == expected


@pytest.mark.integration
def test_it_streams_from_the_bundled_llama_cpp_model(llama_server):
    url, alias = llama_server
    client = OpenAIModelClient(
        ModelSettings(base_url=url, model=alias, max_tokens=24, temperature=0.0, read_timeout=60)
    )
    seen = []
    reply = client.stream([{"role": "user", "content": "Name a colour."}], seen.append)
    assert reply.text.strip()
    assert "".join(seen) == reply.text
    assert len(seen) > 1, "tokens should arrive one by one"
    assert reply.finish_reason in {"stop", "length"}


def test_the_reader_wakes_the_caller_for_the_first_chunk_and_the_end_only():
    inbox = _Inbox(wake_interval=60.0)
    taken: list[list] = []

    def take(timeout):
        started = time.monotonic()
        taken.append(inbox.take(timeout))
        return time.monotonic() - started

    def later(item):
        threading.Timer(0.1, inbox.put, args=(item,)).start()

    later(("chunk", 1))
    assert take(30) < 30  # the first chunk wakes the caller
    later(("chunk", 2))
    assert take(0.5) >= 0.45  # within the interval: picked up at the caller's own poll
    later(("end", None))
    assert take(30) < 30  # the end wakes the caller
    assert taken == [[("chunk", 1)], [("chunk", 2)], [("end", None)]]
