"""The Messages API translated for other providers: blocks into chat messages (tool results
first, thinking kept with its signature), completions and chunks back into Anthropic's
message and stream events, ``tool_use`` as the stop reason for every tool call, and a
provider's signature carried in a tool-use id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.edge.messages import tool_ids
from services.edge.messages.blocks import parse_request
from services.edge.messages.from_chat import StreamTranslator, message, stop_reason
from services.edge.messages.to_chat import chat_body
from services.edge.sse import DONE
from shared.errors import GatewayError

SIG = {"google": {"thought_signature": "c2ln+/="}}


def test_blocks_become_chat_messages() -> None:
    signed_id = tool_ids.with_signature("call_1", SIG)
    request = parse_request(
        {
            "model": "gpt-4.1",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look: "},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JV"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s1"},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": signed_id, "name": "get_weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "and?"},
                        {
                            "type": "tool_result",
                            "tool_use_id": signed_id,
                            "content": [{"type": "text", "text": "sunny"}],
                        },
                    ],
                },
            ],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"],
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "metadata": {"user_id": "u1"},
        }
    )
    body = chat_body(request)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief.\n\nBe kind."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look: "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JV"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s1"}],
            "tool_calls": [
                {
                    "id": signed_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    "extra_content": SIG,
                }
            ],
        },
        # The tool's result first (chat wants it right after the call), then the user's text.
        {"role": "tool", "tool_call_id": signed_id, "content": "sunny"},
        {"role": "user", "content": "and?"},
    ]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["stop"] == ["END"] and body["user"] == "u1"
    assert body["max_completion_tokens"] == 100 and body["reasoning_effort"] == "medium"


def test_a_signature_survives_the_id_and_ids_without_one_are_left_alone() -> None:
    signed = tool_ids.with_signature("toolu_1", SIG)
    assert all(c.isalnum() or c in "_-" for c in signed)  # Anthropic's id pattern
    assert tool_ids.signature_of(signed) == SIG
    assert tool_ids.with_signature("toolu_1", None) == "toolu_1"
    assert tool_ids.signature_of("toolu_1") is None
    assert tool_ids.signature_of("toolu_1__sig_%%%") is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "container_upload"}]}]},
            "messages.0.content.0.type",
        ),
    ],
)
def test_bad_requests_name_the_field_as_anthropic_does(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as exc:
        parse_request(body)
    assert exc.value.param == param and exc.value.status == 400


def test_stop_reason_is_tool_use_whenever_a_tool_is_called() -> None:
    assert stop_reason("stop", called=True) == "tool_use"
    assert stop_reason("tool_calls", called=False) == "tool_use"
    assert stop_reason("length", called=False) == "max_tokens"
    assert stop_reason("content_filter", called=False) == "refusal"
    assert stop_reason(None, called=False) == "end_turn"


def test_a_completion_becomes_a_message() -> None:
    request = parse_request({"model": "alias", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]})
    out = message(
        request,
        {
            "model": "gemini-2.5-flash",
            "choices": [
                {
                    "finish_reason": "stop",
                    "message": {
                        "content": "Let me check.",
                        "reasoning_content": "not asked for",
                        "tool_calls": [
                            {"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}, "extra_content": SIG}
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 6}},
        },
    )
    assert out["stop_reason"] == "tool_use" and out["model"] == "gemini-2.5-flash"
    assert [b["type"] for b in out["content"]] == ["text", "tool_use"]  # no thinking unless asked for
    assert out["content"][1]["input"] == {"a": 1} and tool_ids.signature_of(out["content"][1]["id"]) == SIG
    assert out["usage"] == {
        "input_tokens": 4,
        "cache_read_input_tokens": 6,
        "cache_creation_input_tokens": 0,
        "output_tokens": 4,
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {"model": "gpt-4.1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _events(request: dict[str, Any], chunks: list[bytes]) -> list[dict[str, Any]]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def run() -> list[bytes]:
        translator = StreamTranslator(parse_request(request), input_estimate=7)
        return [e async for e in translator.translate(source())]

    out = []
    for raw in asyncio.run(run()):
        head, data = raw.split(b"\n", 1)
        event = json.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + event["type"].encode()
        out.append(event)
    return out


def test_chunks_become_anthropics_stream_events() -> None:
    request = {
        "model": "m",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    events = _events(
        request,
        [
            _chunk({"role": "assistant", "reasoning_content": "hmm"}),
            _chunk({"thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s1"}]}),
            _chunk({"content": "Hi"}),
            _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "stop"),
            b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}\n\n',
            DONE,
        ],
    )
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["usage"] == {"input_tokens": 7, "output_tokens": 0}
    assert events[1]["content_block"]["type"] == "thinking"
    assert events[3]["delta"] == {"type": "signature_delta", "signature": "s1"}
    assert events[6]["delta"] == {"type": "text_delta", "text": "Hi"}
    assert events[8]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert [e["delta"]["partial_json"] for e in events[9:11]] == ['{"a":', "1}"]
    assert [e["index"] for e in events if "index" in e] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["input_tokens"] == 5 and events[-2]["usage"]["output_tokens"] == 3


def test_a_stream_error_becomes_anthropics_error_event() -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "api_error"}}\n\n'
    events = _events(
        {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]},
        [_chunk({"content": "Hi"}), error],
    )
    assert [e["type"] for e in events][-1] == "error"
    assert events[-1]["error"] == {"type": "api_error", "message": "overloaded"}
    assert "message_stop" not in [e["type"] for e in events]
