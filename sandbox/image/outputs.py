"""The per-cell output caps, shared by the bridge and the host.

The bridge applies them so that it never even sends what is over a cap; the
host applies the same function again to what it receives, because it does not
trust the bridge (kernel code shares its uid). The rules are idempotent: an
output that already passed them passes unchanged, so a well-behaved bridge and
the host agree on every count.

This file is copied into the sandbox image beside the bridge: standard library
only, Python 3.11.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The image formats a display item may carry, most preferred first: an item
# keeps one image, the first of these present that fits (see sandbox.api).
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")
METADATA_BYTES = 16 << 10
ENAME_CHARS = 200
TRACEBACK_FRAMES = 200
MARKER_ROOM = 100  # what a "[... N bytes dropped ...]" marker may take


def json_size(value: Any) -> int:
    """Bytes of the value as it travels in a JSON line (the unit of every cap)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _cut(text: str, size: int) -> str:
    """The longest prefix of text whose JSON size is at most size (UTF-8 safe)."""
    if json_size(text) <= size:
        return text
    low, high = 0, min(len(text), size)
    while low < high:  # JSON escapes make the size non-linear in the length
        middle = (low + high + 1) // 2
        if json_size(text[:middle]) <= size:
            low = middle
        else:
            high = middle - 1
    return text[:low]


@dataclass
class CellCaps:
    """One cell's limits and what it has used and dropped so far."""

    stream_bytes: int = 1 << 20
    display_items: int = 50
    image_bytes: int = 5 << 20
    display_item_bytes: int = 1 << 20
    display_bytes: int = 10 << 20
    used_stream: int = 0
    used_display: int = 0
    displays: int = 0
    dropped: dict[str, int] = field(
        default_factory=lambda: {"stream_bytes": 0, "displays": 0, "images": 0, "display_bytes": 0}
    )

    @classmethod
    def from_limits(cls, raw: dict[str, Any]) -> CellCaps:
        caps = cls()
        for name in ("stream_bytes", "display_items", "image_bytes", "display_item_bytes",
                     "display_bytes"):  # fmt: skip
            value = raw.get(name)
            if isinstance(value, int):
                setattr(caps, name, value)
        return caps

    def take(self, output: Any) -> dict[str, Any] | None:
        """The output within the caps, or None when nothing of it is kept."""
        if not isinstance(output, dict) or output.get("output_type") not in OUTPUT_TYPES:
            return None
        kind = output["output_type"]
        if kind == "stream":
            return self._stream(output)
        if kind == "error":
            return self._error(output)
        if self.displays >= self.display_items:
            self.dropped["displays"] += 1
            return None
        self.displays += 1
        return self._rich(kind, output)

    def _stream(self, output: dict[str, Any]) -> dict[str, Any] | None:
        text = output.get("text")
        text = "".join(map(str, text)) if isinstance(text, list) else str(text or "")
        size = len(text.encode())
        room = self.stream_bytes - self.used_stream
        if size > room:
            text = text.encode()[: max(0, room)].decode(errors="ignore")
            self.dropped["stream_bytes"] += size - len(text.encode())
        if not text:
            return None
        self.used_stream += len(text.encode())
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return {"output_type": "stream", "name": name, "text": text}

    def _room(self) -> int:
        return max(0, min(self.display_item_bytes, self.display_bytes - self.used_display))

    def _rich(self, kind: str, output: dict[str, Any]) -> dict[str, Any]:
        raw = output.get("data")
        items = [(str(k), v) for k, v in raw.items()] if isinstance(raw, dict) else []
        data: dict[str, Any] = {}
        image_room = min(self.image_bytes, self.display_bytes - self.used_display)
        for mime in IMAGE_MIMES:  # the first image that fits; others of the item are not a loss
            value = dict(items).get(mime)
            if value is None:
                continue
            if json_size(value) <= image_room:
                data[mime] = value
                self.used_display += json_size(value)
                break
            self.dropped["images"] += 1
        room, lost = self._room(), 0
        for mime, value in items:
            if mime.startswith("image/"):
                continue
            size = json_size(value)
            if size <= room:
                data[mime] = value
                room -= size
                self.used_display += size
            else:
                lost += size
        if lost:
            self._note_lost(data, lost, room)
        metadata = output.get("metadata")
        if not isinstance(metadata, dict) or json_size(metadata) > METADATA_BYTES:
            metadata = {}
        clean: dict[str, Any] = {"output_type": kind, "data": data, "metadata": metadata}
        if kind == "execute_result":
            count = output.get("execution_count")
            clean["execution_count"] = count if isinstance(count, int) else None
        return clean

    def _note_lost(self, data: dict[str, Any], lost: int, room: int) -> None:
        """Count dropped values; say so in the item's plain text when there is room."""
        note = f"[{lost:,} bytes of this output were dropped: over the size limit]"
        plain = data.get("text/plain")
        text = (plain + "\n" if isinstance(plain, str) else "") + note
        extra = json_size(text) - (json_size(plain) if plain is not None else 0)
        if extra <= room:
            data["text/plain"] = text
            self.used_display += extra
        self.dropped["display_bytes"] += lost

    def _error(self, output: dict[str, Any]) -> dict[str, Any]:
        """An error's text within one item's cap: the end of a traceback matters most."""
        room = self._room()
        ename = str(output.get("ename", ""))[:ENAME_CHARS]
        evalue = str(output.get("evalue", ""))
        frames = output.get("traceback")
        frames = [str(f) for f in frames] if isinstance(frames, list) else []
        total = json_size(evalue) + sum(json_size(f) for f in frames)
        cut = _cut(evalue, max(0, room // 4))
        budget = room - json_size(cut) - json_size(ename)
        kept = _last_frames(frames, budget, TRACEBACK_FRAMES)
        if len(kept) < len(frames):
            # Room for a marker is kept back, so the marked result passes again unchanged.
            kept = _last_frames(frames, budget - MARKER_ROOM, TRACEBACK_FRAMES - 1)
        lost = total - json_size(cut) - sum(json_size(f) for f in kept)
        if lost > 0:
            self.dropped["display_bytes"] += lost
            if budget >= MARKER_ROOM and len(kept) < len(frames):
                kept.insert(0, f"[... {lost:,} bytes of this error were dropped ...]")
        self.used_display += json_size(ename) + json_size(cut) + sum(json_size(f) for f in kept)
        return {"output_type": "error", "ename": ename, "evalue": cut, "traceback": kept}


def _last_frames(frames: list[str], budget: int, most: int) -> list[str]:
    """The longest tail of frames (at most `most`) whose JSON sizes fit in budget."""
    kept: list[str] = []
    for frame in reversed(frames):
        size = json_size(frame)
        if len(kept) >= most or size > budget:
            break
        kept.append(frame)
        budget -= size
    kept.reverse()
    return kept
