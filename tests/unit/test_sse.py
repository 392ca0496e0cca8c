from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.edge.sse import events


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _collect(*parts: bytes) -> list[bytes]:
    async def run() -> list[bytes]:
        return [e async for e in events(_chunks(*parts))]

    return asyncio.run(run())


def test_events_split_across_and_within_chunks() -> None:
    assert _collect(b'data: {"a"', b': 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n') == [
        b'{"a": 1}',
        b'{"b": 2}',
        b"[DONE]",
    ]


def test_crlf_comments_other_fields_and_no_space() -> None:
    stream = b': keep-alive\r\n\r\nevent: message\r\nid: 7\r\ndata:{"x":1}\r\n\r\n'
    assert _collect(stream) == [b'{"x":1}']


def test_multiline_data_and_unterminated_tail() -> None:
    assert _collect(b"data: a\ndata: b\n\ndata: tail") == [b"a\nb", b"tail"]
