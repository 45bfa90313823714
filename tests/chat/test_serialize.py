"""What the page is told about a cell whose output went over its limits."""

from chat.serialize import dropped_note


def test_it_says_in_words_what_the_limits_kept_out():
    note = dropped_note({"stream_bytes": 3 << 20, "displays": 1, "images": 2, "display_bytes": 512})
    assert note == (
        "Over this cell's output limits, not kept: 3.0 MB of printed output, 1 displayed item, "
        "2 images, 512 bytes of displayed data or error text."
    )


def test_it_says_nothing_when_nothing_was_dropped():
    assert dropped_note({}) == ""
