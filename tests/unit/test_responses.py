"""The Responses API's translation, piece by piece: requests checked into typed items,
items into chat messages (assistant runs merged, signatures kept), chat chunks into the
typed event sequence, and reasoning content that round-trips."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.edge.responses import reasoning
from services.edge.responses.from_chat import Draft, StreamTranslator, from_completion
from services.edge.responses.items import parse_request
from services.edge.responses.to_chat import chat_body
from services.edge.sse import DONE
from shared.errors import GatewayError

SIGNED = [{"type": "thinking", "thinking": "Let me see", "signature": "c2lnbmVk"}]


def test_items_become_chat_messages_with_assistant_runs_merged() -> None:
    request = parse_request(
        {
            "model": "claude-sonnet-4-6",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "reasoning", "summary": [], "encrypted_content": reasoning.seal(SIGNED)},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": '{"city":"Paris"}',
                    "extra_content": {"google": {"thought_signature": "sig"}},
                },
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
            "reasoning": {"effort": "minimal"},
            "max_output_tokens": 50,
        }
    )
    body = chat_body(request, [])
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "thinking_blocks": SIGNED,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    "extra_content": {"google": {"thought_signature": "sig"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
    }
    assert body["reasoning_effort"] == "low" and body["max_completion_tokens"] == 50
    assert "stream_options" not in body


def test_stored_context_comes_before_the_new_input_and_instructions_are_not_carried() -> None:
    earlier = parse_request({"model": "m", "input": [{"role": "user", "content": "one"}]}).input_items()
    request = parse_request({"model": "m", "input": "two", "stream": True})
    body = chat_body(request, earlier)
    assert body["messages"] == [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    assert body["stream_options"] == {"include_usage": True}  # the usage of a stream is always metered


def test_media_parts_map_to_chat_parts() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                    ],
                }
            ],
        }
    )
    assert chat_body(request, [])["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}},
    ]
    with pytest.raises(GatewayError, match="file ids"):
        chat_body(
            parse_request(
                {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}
            ),
            [],
        )


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m", "input": [{"role": "wizard", "content": "x"}]}, "input[0].role", None),
        (
            {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
            "missing_required_parameter",
        ),
        ({"model": "m", "tool_choice": {"type": "function"}}, "tool_choice.name", "missing_required_parameter"),
        ({"model": "m", "input": [{"type": "web_search_call"}]}, "input[0].type", "unsupported_parameter"),
        ({"model": "m", "tools": [{"type": "file_search"}]}, "tools[0].type", "unsupported_parameter"),
        ({"input": "x"}, "model", "missing_required_parameter"),
    ],
)
def test_bad_requests_name_the_field_as_the_client_wrote_it(body: dict[str, Any], param: str, code: str | None) -> None:
    with pytest.raises(GatewayError) as exc:
        parse_request(body)
    assert exc.value.param == param and exc.value.status == 400
    assert exc.value.code == code


def test_reasoning_content_round_trips_and_foreign_content_is_ignored() -> None:
    assert reasoning.unseal(reasoning.seal(SIGNED)) == SIGNED
    assert reasoning.unseal("gAAAAABo-openai-encrypted") == []
    assert reasoning.unseal(reasoning.PREFIX + "!!not base64") == []
    assert reasoning.unseal(None) == []


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    payload = {"model": "claude-x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _chunks(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


def _translate(request: dict[str, Any], chunks: list[bytes]) -> tuple[list[dict[str, Any]], list[Draft]]:
    stored: list[Draft] = []

    async def finish(draft: Draft) -> None:
        stored.append(draft)

    async def run() -> list[bytes]:
        translator = StreamTranslator(Draft(parse_request(request)), finish)
        return [e async for e in translator.translate(_chunks(chunks))]

    events = []
    for raw in asyncio.run(run()):
        head, data = raw.split(b"\n", 1)
        event = json.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + event["type"].encode()  # SSE event name and payload type agree
        events.append(event)
    return events, stored


def test_a_stream_becomes_the_typed_event_sequence() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 7, "completion_tokens_details": {"reasoning_tokens": 3}}
    events, stored = _translate(
        {"model": "m", "input": "x", "reasoning": {"effort": "low", "summary": "auto"}},
        [
            _chunk({"role": "assistant", "reasoning_content": "Hmm"}),
            _chunk({"thinking_blocks": SIGNED}),
            _chunk({"content": "Hi "}),
            _chunk({"content": "there"}),
            _chunk({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": ""}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"),
            b'data: {"choices": [], "usage": ' + json.dumps(usage).encode() + b"}\n\n",
            DONE,
        ],
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": "Hmm"}]
    assert "encrypted_content" not in final["output"][0]  # not asked for
    assert final["output"][1]["content"][0]["text"] == "Hi there"
    assert final["output"][2]["arguments"] == '{"a":1}' and final["output"][2]["call_id"] == "t1"
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 3} and final["usage"]["total_tokens"] == 16
    # The stored draft keeps the signed thinking for the next turn.
    (draft,) = stored
    assert reasoning.unseal(draft.body(public=False)["output"][0]["encrypted_content"]) == SIGNED


def test_a_stream_error_fails_the_response_and_stores_nothing() -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "api_error", "code": "upstream_error"}}\n\n'
    events, stored = _translate({"model": "m", "input": "x"}, [_chunk({"content": "Hi"}), error])
    assert [e["type"] for e in events][-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "upstream_error", "message": "overloaded"}
    assert failed["output"][0]["content"][0]["text"] == "Hi"
    assert stored == []


def test_a_completion_becomes_a_response() -> None:
    draft = Draft(parse_request({"model": "alias", "input": "x", "include": ["reasoning.encrypted_content"]}))
    from_completion(
        draft,
        {
            "model": "claude-x",
            "choices": [
                {
                    "finish_reason": "length",
                    "message": {"content": "Partial", "reasoning_content": "Hmm", "thinking_blocks": SIGNED},
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}},
        },
    )
    body = draft.body()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["model"] == "claude-x"
    assert body["output"][0]["summary"] == []  # no summary was asked for
    assert reasoning.unseal(body["output"][0]["encrypted_content"]) == SIGNED  # asked to include it
    assert body["usage"]["input_tokens_details"] == {"cached_tokens": 2}
