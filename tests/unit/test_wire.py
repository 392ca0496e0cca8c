"""The shared stream relay's endings that are not the provider's: an event of a shape the
gateway cannot read (the provider's fault, ``upstream_bad_event``) and an error in the
gateway's own translation (``internal_error``, logged), each an error event in the client's
shape, never a crash and never a finished stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from services.edge.providers import anthropic, anthropic_replies
from services.edge.providers.base import StreamMeter
from services.edge.providers.wire import INTERNAL_ERROR, relay


class _Body:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.raw = b"".join(f"event: {e.get('type')}\ndata: {json.dumps(e)}\n\n".encode() for e in events)

    async def iter_any(self) -> AsyncIterator[bytes]:
        yield self.raw


class _Response:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.content = _Body(events)
        self.closed = self.released = False

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


def _relay(events: list[dict[str, Any]], translator: Any, meter: StreamMeter) -> tuple[list[bytes], _Response]:
    resp = _Response(events)
    call = SimpleNamespace(route=SimpleNamespace(provider="anthropic"))

    async def run() -> list[bytes]:
        return [chunk async for chunk in relay(call, resp, translator, meter)]  # type: ignore[arg-type]

    return asyncio.run(run()), resp


START = {"type": "message_start", "message": {"id": "m1", "usage": {"input_tokens": 3, "output_tokens": 0}}}


def test_an_event_of_another_shape_is_the_providers_fault() -> None:
    meter = StreamMeter()
    bad = {"type": "content_block_delta", "index": "first", "delta": {"type": "text_delta", "text": "x"}}
    out, resp = _relay([START, bad], anthropic.AnthropicStream("m", meter, True, False), meter)
    error = json.loads(out[-1].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_bad_event" and "unexpected shape (content_block_delta.index:" in error["message"]
    assert meter.error_type == "upstream_bad_event" and not meter.finished
    assert resp.closed  # the provider's connection is cut, not kept


class _Buggy:
    """A translator with a bug of ours: it fails on an event of the right shape."""

    schema = anthropic_replies.EVENT
    finished = False

    def feed(self, event: dict[str, Any], data: bytes) -> list[bytes]:
        if event["type"] == "content_block_start":
            return [{}["missing"]]  # type: ignore[index]
        return []

    def eof(self) -> None:
        pass

    def close(self) -> list[bytes]:
        return []


def test_a_bug_in_translation_is_an_internal_error_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    meter = StreamMeter()
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    with caplog.at_level("ERROR", logger="switchyard.edge.wire"):
        out, resp = _relay([START, block], _Buggy(), meter)
    error = json.loads(out[-1].removeprefix(b"data: "))["error"]
    assert error["code"] == INTERNAL_ERROR and error["type"] == "server_error"
    assert "anthropic" not in error["message"]  # not blamed on the provider
    assert meter.error_type == INTERNAL_ERROR and not meter.finished and resp.closed
    assert "KeyError: 'missing'" in caplog.text
