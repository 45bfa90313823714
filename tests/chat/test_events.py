import json

import pytest
from pydantic import TypeAdapter, ValidationError

from chat.consumers import _explain
from chat.events import ClientFrame, ResumeFrame, UserMessageFrame, encode_frames

frames = TypeAdapter(ClientFrame)


def test_it_parses_each_client_frame():
    assert isinstance(
        frames.validate_json('{"type": "user_message", "text": " hi "}'), UserMessageFrame
    )
    assert frames.validate_json('{"type": "user_message", "text": " hi "}').text == "hi"
    assert frames.validate_json('{"type": "resume", "after_seq": 4}') == ResumeFrame(
        type="resume", after_seq=4
    )


@pytest.mark.parametrize(
    ("text", "explanation"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object with a 'type'"),
        ('{"text": "hi"}', "must be a JSON object with a 'type'"),
        ('{"type": "launch_missiles"}', "Unknown frame type 'launch_missiles'"),
        ('{"type": "resume", "after_seq": -1}', "Invalid 'resume' frame"),
        ('{"type": "user_message", "text": "   "}', "Invalid 'user_message' frame"),
        ('{"type": "user_message", "text": "hi", "extra": 1}', "Invalid 'user_message' frame"),
    ],
)
def test_it_explains_bad_frames(text, explanation):
    with pytest.raises(ValidationError) as caught:
        frames.validate_json(text)
    assert explanation in _explain(text, caught.value)


def test_it_parses_a_model_choice():
    frame = frames.validate_json('{"type": "set_model", "model": "qwen"}')
    assert (frame.type, frame.model) == ("set_model", "qwen")
    with pytest.raises(ValidationError):
        frames.validate_json('{"type": "set_model", "model": ""}')


def test_it_parses_a_web_access_switch():
    frame = frames.validate_json('{"type": "set_web_access", "on": false}')
    assert (frame.type, frame.on) == ("set_web_access", False)
    for bad in ('"yes"', "1", "null"):
        with pytest.raises(ValidationError):
            frames.validate_json('{"type": "set_web_access", "on": ' + bad + "}")


def join(texts):
    """What socket.js does with what encode_frames gives."""
    parts = [json.loads(t) for t in texts]
    if parts[0]["type"] != "part":
        assert len(parts) == 1
        return parts[0]
    assert {p["id"] for p in parts} == {7}
    assert [p["last"] for p in parts] == [False] * (len(parts) - 1) + [True]
    return json.loads("".join(p["text"] for p in parts))


def test_a_frame_within_the_limit_goes_as_it_is():
    event = {"type": "pong"}
    assert encode_frames(event, 1024, 7) == ['{"type":"pong"}']


@pytest.mark.parametrize(
    "text",
    [
        "plain " * 2000,
        '"\\' * 3000,  # each character doubles when quoted again
        "é漢🙂\n\t" * 2000,  # escaped to \\uXXXX, surrogate pairs for the emoji
        "\x00\x1f" * 2000,
    ],
)
def test_a_large_frame_goes_in_parts_under_the_limit_that_join_to_it(text):
    event = {"type": "sync", "last_seq": 3, "events": [{"type": "output", "text": text}]}
    texts = encode_frames(event, 1024, 7)
    assert len(texts) > 1
    assert max(len(t.encode()) for t in texts) <= 1024
    assert join(texts) == event
