"""The cell caps the bridge and the host share (sandbox/image/outputs.py)."""

from typing import Any

from sandbox.image.outputs import CellCaps, json_size

KiB = 1 << 10


def small_caps() -> CellCaps:
    return CellCaps(display_item_bytes=10 * KiB, display_bytes=25 * KiB, image_bytes=8 * KiB)


def display(data: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": {}}


def test_it_drops_a_text_value_over_the_item_cap_and_counts_its_bytes():
    caps = small_caps()
    kept = caps.take(display({"text/html": "<b>" + "x" * 20 * KiB, "text/plain": "table"}))
    assert kept is not None and "text/html" not in kept["data"]
    assert kept["data"]["text/plain"].startswith("table\n[")
    assert "bytes of this output were dropped" in kept["data"]["text/plain"]
    assert caps.dropped["display_bytes"] == json_size("<b>" + "x" * 20 * KiB)


def test_it_caps_the_rich_bytes_of_a_whole_cell():
    caps = small_caps()
    for _ in range(10):
        caps.take(display({"application/json": {"v": "y" * 8 * KiB}}))
    assert caps.used_display <= 25 * KiB
    assert caps.dropped["display_bytes"] >= 7 * 8 * KiB


def test_it_keeps_the_end_of_a_long_traceback():
    caps = small_caps()
    frames = [f"frame {i}: " + "z" * 500 for i in range(100)] + ["ValueError: the end"]
    kept = caps.take(
        {
            "output_type": "error",
            "ename": "ValueError",
            "evalue": "v" * 30 * KiB,
            "traceback": frames,
        }
    )
    assert kept is not None
    assert kept["traceback"][-1] == "ValueError: the end"
    assert kept["traceback"][0].startswith("[... ")
    assert json_size(kept) <= 10 * KiB + 200
    assert caps.dropped["display_bytes"] > 30 * KiB


def test_it_passes_what_it_already_capped_unchanged():
    """The host re-applies the caps to what the bridge sent: a fair bridge loses nothing twice."""
    bridge, host = small_caps(), small_caps()
    outputs = [
        display({"text/html": "h" * 12 * KiB, "text/plain": "p" * 3 * KiB}),
        display({"image/png": "i" * 9 * KiB, "image/jpeg": "j" * 2 * KiB, "text/plain": "fig"}),
        {
            "output_type": "error",
            "ename": "E",
            "evalue": "e" * 5 * KiB,
            "traceback": ["t" * 900] * 30,
        },
        {"output_type": "stream", "name": "stdout", "text": "s" * 2 * KiB},
    ] * 3
    for output in outputs:
        sent = bridge.take(output)
        if sent is not None:
            assert host.take(sent) == sent
    assert all(count == 0 for count in host.dropped.values()), host.dropped
    assert bridge.dropped["display_bytes"] > 0 and bridge.dropped["images"] >= 3
