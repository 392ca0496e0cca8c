"""Server-sent events: split a byte stream into events, and frame data as events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


def frame(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


DONE = frame(b"[DONE]")


async def events(chunks: AsyncIterator[bytes], *, max_event_bytes: int = 16 * 1024 * 1024) -> AsyncIterator[bytes]:
    """Yield the ``data`` payload of each event as soon as its terminating blank line arrives.

    Multi-line data is joined with ``\\n`` as the SSE spec says; comments and other fields
    (``event:``, ``id:``, ``retry:``) are dropped. Line endings may be ``\\n`` or ``\\r\\n``.
    """
    buf = b""
    async for chunk in chunks:
        buf += chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            block, buf = buf[:end], buf[end + 2 :]
            data = _data(block)
            if data is not None:
                yield data
        if len(buf) > max_event_bytes:
            raise ValueError("upstream sent an oversized event")
    if buf.strip():
        data = _data(buf)
        if data is not None:
            yield data


def _data(block: bytes) -> bytes | None:
    lines = [line for line in block.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    parts = [line[6:] if line.startswith(b"data: ") else line[5:] for line in lines]
    return b"\n".join(parts)


def json_data(event: bytes) -> dict[str, Any] | None:
    """The JSON object one whole event carries (a relayed chunk); None for ``[DONE]``,
    anything not JSON, or JSON that is not an object."""
    data = _data(event.strip(b"\n"))
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
