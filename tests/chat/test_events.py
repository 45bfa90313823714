import pytest
from pydantic import TypeAdapter, ValidationError

from chat.consumers import _explain
from chat.events import ClientFrame, ResumeFrame, UserMessageFrame

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
