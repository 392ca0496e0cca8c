"""The Anthropic and Gemini translators without I/O: requests out, replies and stream events
in. Every streaming case has a non-streaming twin that must give the same answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.edge.providers import anthropic as ant
from services.edge.providers import common
from services.edge.providers import gemini as gem
from services.edge.providers.base import Call, StreamMeter
from shared.catalog import ProviderConfig, Route
from shared.errors import GatewayError

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def call(provider: str, body: dict[str, Any], drop: bool = False, capabilities: tuple[str, ...] = ()) -> Call:
    cfg = ProviderConfig(api=provider, base_url="http://x")
    route = Route(model="m", provider=provider, upstream_model="m-up", capabilities=capabilities)
    return Call(route, cfg, None, body, "req_1", None, drop)  # type: ignore[arg-type]


def chunks(events: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        data = event[6:-2]
        if data != b"[DONE]":
            out.append(json.loads(data))
    return out


def assemble(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """A stream's chunks folded into the message a non-streaming reply would hold."""
    message: dict[str, Any] = {"content": "", "reasoning_content": "", "tool_calls": {}, "thinking_blocks": []}
    finish = None
    for payload in payloads:
        for choice in payload["choices"]:
            delta = choice["delta"]
            message["content"] += delta.get("content") or ""
            message["reasoning_content"] += delta.get("reasoning_content") or ""
            message["thinking_blocks"] += delta.get("thinking_blocks") or []
            for tc in delta.get("tool_calls") or []:
                slot = message["tool_calls"].setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] += (tc.get("function") or {}).get("name") or ""
                slot["arguments"] += (tc.get("function") or {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message["finish_reason"] = finish
    return message


# --- Anthropic: request -------------------------------------------------------------------


def test_anthropic_request_maps_roles_tools_and_merges_tool_results() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call.2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call.2", "content": "rain"},
        ],
        "tools": [WEATHER],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
        "max_completion_tokens": 50,
        "user": "u-1",
    }
    out = ant.to_anthropic(call("anthropic", body))
    assert out["system"] == [{"type": "text", "text": "sys"}]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    results = out["messages"][2]["content"]
    assert [r["tool_use_id"] for r in results] == ["call_1", "call_2"]  # merged, ids mapped alike
    assert out["messages"][1]["content"][1] == {
        "type": "tool_use",
        "id": "call_2",
        "name": "get_weather",
        "input": {"city": "Rome"},
    }
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
    assert out["stop_sequences"] == ["END"] and out["max_tokens"] == 50 and out["metadata"] == {"user_id": "u-1"}


def test_anthropic_request_images_pdf_thinking_and_json_mode() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                    {
                        "type": "file",
                        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERg=="},
                    },
                ],
            }
        ],
        "reasoning_effort": "medium",
    }
    out = ant.to_anthropic(call("anthropic", body))
    blocks = out["messages"][0]["content"]
    assert blocks[0]["source"] == {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    assert blocks[1]["source"] == {"type": "url", "url": "https://example.com/a.png"}
    assert blocks[2]["type"] == "document" and blocks[2]["title"] == "a.pdf"
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192} and out["max_tokens"] > 8192
    json_body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"},
    }
    out = ant.to_anthropic(call("anthropic", json_body))
    assert out["tool_choice"] == {"type": "tool", "name": ant.JSON_TOOL}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"seed": 1}, "seed"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ],
)
def test_anthropic_unsupported_parameters_fail_or_are_dropped(extra: dict[str, Any], param: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(GatewayError) as err:
        ant.to_anthropic(call("anthropic", body))
    assert err.value.status == 400 and err.value.param == param
    dropping = call("anthropic", body, drop=True)
    out = ant.to_anthropic(dropping)
    assert dropping.dropped == [param] and param not in out


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64,@@@",
        "data:image/png,AAAA",
        "data:;base64,AAAA",
        "ftp://x/a.png",
        "data:image/bmp;base64,AAAA",
    ],
)
def test_anthropic_broken_images_are_clear_400s(url: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(GatewayError) as err:
        ant.to_anthropic(call("anthropic", body))
    assert err.value.status == 400 and err.value.param == "messages[0].content[0]"


def test_anthropic_thinking_blocks_go_back_first() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": "",
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "t", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "r"},
                ],
                "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"},
        ],
    }
    blocks = ant.to_anthropic(call("anthropic", body))["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["thinking", "redacted_thinking", "tool_use"]
    assert blocks[0]["signature"] == "sig"


# --- Anthropic: reply and stream (twins) --------------------------------------------------

ANTHROPIC_REPLY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {"zone": "CET"}},
    ],
    "stop_reason": "tool_use",
    "usage": {
        "input_tokens": 10,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 2,
        "output_tokens": 7,
        "output_tokens_details": {"thinking_tokens": 3},
    },
}


def anthropic_events(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream Anthropic sends for ``reply``: each block started, streamed, stopped."""
    final = {k: v for k, v in reply["usage"].items() if k.startswith("output_")}
    first = {k: v for k, v in reply["usage"].items() if not k.startswith("output_")}
    start = dict(reply, content=[], stop_reason=None, usage=dict(first, output_tokens=1))
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for i, block in enumerate(reply["content"]):
        kind = block["type"]
        empty = {"text": {"type": "text", "text": ""}, "thinking": {"type": "thinking", "thinking": ""}}.get(kind)
        events.append({"type": "content_block_start", "index": i, "content_block": empty or dict(block, input={})})
        if kind == "text":
            for piece in (block["text"][:4], block["text"][4:]):
                events.append(
                    {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}}
                )
        elif kind == "thinking":
            events.append(
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                }
            )
            events.append(
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {"type": "signature_delta", "signature": block["signature"]},
                }
            )
        else:
            args = json.dumps(block["input"])
            for piece in (args[:5], args[5:]):
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    }
                )
        events.append({"type": "content_block_stop", "index": i})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply["stop_reason"]},
            "usage": final,
        }
    )
    events.append({"type": "message_stop"})
    return events


def test_anthropic_reply_and_stream_are_twins() -> None:
    raw, usage = ant.to_openai(ANTHROPIC_REPLY, "claude", json_mode=False)
    message = json.loads(raw)["choices"][0]["message"]
    finish = json.loads(raw)["choices"][0]["finish_reason"]
    assert finish == "tool_calls" and message["content"] == "Let me check." and message["reasoning_content"] == "hmm"
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    assert [tc["id"] for tc in message["tool_calls"]] == ["toolu_a", "toolu_b"]
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens, usage.completion_tokens) == (
        16,
        4,
        2,
        7,
    )
    assert usage.reasoning_tokens == 3
    assert json.loads(raw)["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3

    meter = StreamMeter()
    machine = ant.AnthropicStream("claude", meter, wants_usage=True, json_mode=False)
    out: list[bytes] = []
    for event in anthropic_events(ANTHROPIC_REPLY):
        out += machine.feed(event)
    assert machine.finished
    out += machine.close()
    payloads = chunks(out)
    streamed = assemble(payloads[:-1])
    assert streamed["content"] == message["content"] and streamed["reasoning_content"] == "hmm"
    assert streamed["thinking_blocks"] == message["thinking_blocks"]
    # Tool calls are indexed by call (0, 1), not by content block (2, 3).
    assert sorted(streamed["tool_calls"]) == [0, 1]
    for k, tc in enumerate(message["tool_calls"]):
        got = streamed["tool_calls"][k]
        assert (got["id"], got["name"], json.loads(got["arguments"])) == (
            tc["id"], tc["function"]["name"], json.loads(tc["function"]["arguments"])
        )  # fmt: skip
    assert streamed["finish_reason"] == finish
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    assert payloads[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3
    assert meter.usage is not None and meter.usage.prompt_tokens == 16 and meter.usage.reasoning_tokens == 3


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter")],
)
def test_anthropic_finish_reasons_twins(stop_reason: str, finish: str) -> None:
    reply = dict(ANTHROPIC_REPLY, content=[{"type": "text", "text": "some text"}], stop_reason=stop_reason)
    raw, _ = ant.to_openai(reply, "claude", json_mode=False)
    assert json.loads(raw)["choices"][0]["finish_reason"] == finish
    machine = ant.AnthropicStream("claude", StreamMeter(), wants_usage=False, json_mode=False)
    out = [b for e in anthropic_events(reply) for b in machine.feed(e)] + machine.close()
    assert assemble(chunks(out))["finish_reason"] == finish


def test_anthropic_json_mode_twins() -> None:
    reply = dict(ANTHROPIC_REPLY, content=[{"type": "tool_use", "id": "t", "name": ant.JSON_TOOL, "input": {"a": 1}}])
    raw, _ = ant.to_openai(reply, "claude", json_mode=True)
    choice = json.loads(raw)["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"a": 1} and choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    machine = ant.AnthropicStream("claude", StreamMeter(), wants_usage=False, json_mode=True)
    streamed = assemble(chunks([b for e in anthropic_events(reply) for b in machine.feed(e)]))
    assert (
        json.loads(streamed["content"]) == {"a": 1}
        and streamed["finish_reason"] == "stop"
        and not streamed["tool_calls"]
    )


def test_anthropic_error_event_and_error_bodies() -> None:
    machine = ant.AnthropicStream("claude", StreamMeter(), wants_usage=False, json_mode=False)
    with pytest.raises(GatewayError) as err:
        machine.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert err.value.status == 503 and not machine.finished
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    mapped = ant.error_from(429, body, "anthropic", {"retry-after": "3"})
    assert (mapped.status, mapped.type, mapped.message, mapped.headers) == (
        429,
        "rate_limit_error",
        "slow down",
        {"retry-after": "3"},
    )
    assert (
        ant.error_from(
            529, b'{"type":"error","error":{"type":"overloaded_error","message":"o"}}', "anthropic", {}
        ).status
        == 503
    )
    assert ant.error_from(401, b"not json", "anthropic", {}).type == "authentication_error"


# --- Gemini: request ----------------------------------------------------------------------


def test_gemini_request_maps_contents_config_and_signatures() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "q"},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                        "extra_content": {"google": {"thought_signature": "SIG"}},
                    },
                    {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": '{"zone":"CET"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"sky":"sunny"}'},
            {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "n": 2,
        "seed": 3,
        "logprobs": True,
        "top_logprobs": 2,
        "stop": ["x"],
        "max_tokens": 9,
        "reasoning_effort": "high",
        "response_format": {"type": "json_object"},
    }
    out = asyncio.run(gem.to_gemini(call("gemini", body)))
    assert out["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert out["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "audio/wav", "data": "AAAA"}}
    assert out["contents"][1]["parts"][0]["thoughtSignature"] == "SIG"
    responses = [p["functionResponse"] for p in out["contents"][2]["parts"]]
    assert responses == [
        {"name": "get_weather", "response": {"sky": "sunny"}},
        {"name": "get_time", "response": {"result": "noon"}},
    ]
    config = out["generationConfig"]
    assert (
        config["candidateCount"] == 2 and config["seed"] == 3 and config["logprobs"] == 2 and config["responseLogprobs"]
    )
    assert config["stopSequences"] == ["x"] and config["maxOutputTokens"] == 9
    assert config["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    assert config["responseMimeType"] == "application/json"
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


def test_gemini_schema_normalisation() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "b": {"type": ["string", "null"]},
            "a": {"$ref": "#/$defs/thing"},
            "c": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "d": {"const": "fixed"},
        },
        "required": ["a"],
        "additionalProperties": False,
        "$defs": {"thing": {"type": "object", "properties": {"x": {"type": "number"}}, "additionalProperties": False}},
    }
    out = gem.gemini_schema(schema)
    assert out == {
        "type": "OBJECT",
        "properties": {
            "b": {"type": "STRING", "nullable": True},
            "a": {"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}}, "propertyOrdering": ["x"]},
            "c": {"nullable": True, "type": "INTEGER"},
            "d": {"enum": ["fixed"], "type": "STRING"},
        },
        "propertyOrdering": ["b", "a", "c", "d"],
        "required": ["a"],
    }
    with pytest.raises(GatewayError):
        gem.gemini_schema(
            {"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {"k": {"$ref": "#/$defs/n"}}}}}
        )


def test_gemini_unsupported_and_tool_result_without_call() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "parallel_tool_calls": False}
    with pytest.raises(GatewayError) as err:
        asyncio.run(gem.to_gemini(call("gemini", body)))
    assert err.value.param == "parallel_tool_calls"
    orphan = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}],
    }
    with pytest.raises(GatewayError) as err:
        asyncio.run(gem.to_gemini(call("gemini", orphan)))
    assert err.value.status == 400 and "tool_call_id" in (err.value.param or "")


# --- Gemini: reply and stream (twins) -----------------------------------------------------

GEMINI_REPLY = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "pondering", "thought": True},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "S1"},
                    {"functionCall": {"name": "get_time", "args": {"zone": "CET"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 20,
        "candidatesTokenCount": 6,
        "thoughtsTokenCount": 4,
        "cachedContentTokenCount": 5,
    },
    "responseId": "r1",
}


def gemini_chunks(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream Gemini sends for ``reply``: one chunk per part, the finish reason and the
    full usage on the last."""
    cand = reply["candidates"][0]
    out = []
    for part in cand["content"]["parts"]:
        out.append({"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}], "responseId": "r1"})
    out.append(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": ""}]},
                    "finishReason": cand["finishReason"],
                    "index": 0,
                }
            ],
            "usageMetadata": reply["usageMetadata"],
        }
    )
    return out


def test_gemini_reply_and_stream_are_twins() -> None:
    raw, usage = gem.to_openai(GEMINI_REPLY, "gemini")
    choice = json.loads(raw)["choices"][0]
    message = choice["message"]
    assert choice["finish_reason"] == "tool_calls" and message["reasoning_content"] == "pondering"
    assert message["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "S1"}}
    assert "extra_content" not in message["tool_calls"][1]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens, usage.cached_tokens) == (20, 10, 4, 5)

    meter = StreamMeter()
    machine = gem.GeminiStream("gemini", meter, wants_usage=True)
    out: list[bytes] = []
    for event in gemini_chunks(GEMINI_REPLY):
        out += machine.feed(event)
    assert not machine.finished and meter.usage is None, "usage is metered once the stream is complete"
    machine.eof()
    assert machine.finished and meter.usage is not None and meter.usage.completion_tokens == 10
    out += machine.close()
    payloads = chunks(out)
    streamed = assemble(payloads[:-1])
    assert streamed["reasoning_content"] == "pondering" and streamed["finish_reason"] == "tool_calls"
    assert [(tc["name"], json.loads(tc["arguments"])) for tc in streamed["tool_calls"].values()] == [
        (tc["function"]["name"], json.loads(tc["function"]["arguments"])) for tc in message["tool_calls"]
    ]
    assert sorted(streamed["tool_calls"]) == [0, 1]
    signed = [
        tc for p in payloads for c in p["choices"] for tc in c["delta"].get("tool_calls") or [] if "extra_content" in tc
    ]
    assert [tc["extra_content"]["google"]["thought_signature"] for tc in signed] == ["S1"]
    assert payloads[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter")],
)
def test_gemini_finish_reasons_twins(reason: str, finish: str) -> None:
    reply = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "hi there"}]}, "finishReason": reason, "index": 0}
        ],
        "usageMetadata": {},
    }
    raw, _ = gem.to_openai(reply, "gemini")
    assert json.loads(raw)["choices"][0]["finish_reason"] == finish
    machine = gem.GeminiStream("gemini", StreamMeter(), wants_usage=False)
    out = [b for e in gemini_chunks(reply) for b in machine.feed(e)]
    machine.eof()
    assert machine.finished and assemble(chunks(out))["finish_reason"] == finish


def test_gemini_stream_without_finish_is_not_finished_and_errors_map() -> None:
    machine = gem.GeminiStream("gemini", StreamMeter(), wants_usage=False)
    machine.feed({"candidates": [{"content": {"role": "model", "parts": [{"text": "par"}]}, "index": 0}]})
    machine.eof()
    assert not machine.finished, "a body that ends before finishReason is a cut stream"
    with pytest.raises(GatewayError) as err:
        machine.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    assert err.value.status == 503
    bad_key = (
        b'{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT",'
        b'"details":[{"reason":"API_KEY_INVALID"}]}}'
    )
    mapped = gem.error_from(400, bad_key, "gemini", {})
    assert mapped.status == 401 and mapped.upstream_status == 401, "a refused key is a 401, so the key is marked"
    limited = gem.error_from(
        429, b'{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}', "gemini", {"retry-after": "9"}
    )
    assert (limited.status, limited.type, limited.headers["retry-after"]) == (429, "rate_limit_error", "9")


def test_gemini_blocked_prompt_is_content_filter_in_both_modes() -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    raw, _ = gem.to_openai(blocked, "gemini")
    assert json.loads(raw)["choices"][0]["finish_reason"] == "content_filter"
    machine = gem.GeminiStream("gemini", StreamMeter(), wants_usage=False)
    out = machine.feed(blocked)
    machine.eof()
    assert machine.finished and assemble(chunks(out))["finish_reason"] == "content_filter"


def test_gemini_embedding_base64_is_little_endian_float32() -> None:
    assert gem.encode_embedding([1.0, -2.0], "base64") == "AACAPwAAAMA="
    assert gem.encode_embedding([0.5], "float") == [0.5]


def test_anthropic_refuses_audio_parts_naming_them() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, part]}]}
    with pytest.raises(GatewayError) as err:
        ant.to_anthropic(call("anthropic", body))
    assert err.value.status == 400 and err.value.param == "messages[0].content[1]"


def test_anthropic_forced_tool_while_thinking_fails_or_is_dropped() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "reasoning_effort": "low",
    }
    with pytest.raises(GatewayError) as err:
        ant.to_anthropic(call("anthropic", body))
    assert err.value.param == "tool_choice"
    dropping = call("anthropic", body, drop=True)
    out = ant.to_anthropic(dropping)
    assert dropping.dropped == ["tool_choice"] and "tool_choice" not in out and out["thinking"]["budget_tokens"] == 2048


def test_anthropic_json_schema_must_be_an_object() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "array", "items": {"type": "string"}}},
    }
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": fmt}
    with pytest.raises(GatewayError) as err:
        ant.to_anthropic(call("anthropic", body))
    assert err.value.status == 400 and err.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize(
    ("sampling", "sent", "refused"),
    [
        ({"temperature": 0.2}, {"temperature": 0.2}, None),
        ({"top_p": 0.9}, {"top_p": 0.9}, None),
        ({"temperature": 0.2, "top_p": 1}, {"temperature": 0.2}, None),  # top_p 1: the whole distribution
        ({"temperature": 1, "top_p": 0.9}, {"top_p": 0.9}, None),  # temperature 1: Anthropic's default
        ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2}, "top_p"),  # one of them, not both
        ({"temperature": 1.5}, {}, "temperature"),  # OpenAI's range goes to 2, Anthropic's to 1
    ],
)
def test_anthropic_sampling_one_of_temperature_and_top_p(
    sampling: dict[str, float], sent: dict[str, float], refused: str | None
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **sampling}
    if refused is not None:
        with pytest.raises(GatewayError) as err:
            ant.to_anthropic(call("anthropic", body))
        assert err.value.status == 400 and err.value.param == refused
    dropping = call("anthropic", body, drop=True)
    out = ant.to_anthropic(dropping)
    assert {k: out[k] for k in ("temperature", "top_p") if k in out} == sent
    assert dropping.dropped == ([refused] if refused else [])


def test_anthropic_api_version_2026_10_21_has_no_sampling_parameters() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.2, "top_p": 1}
    newer = call("anthropic", body)
    newer.provider = newer.provider.model_copy(update={"api_version": "2026-10-21"})
    with pytest.raises(GatewayError) as err:
        ant.to_anthropic(newer)
    assert err.value.status == 400 and err.value.param == "temperature" and "2026-10-21" in err.value.message
    newer.drop_params = True
    out = ant.to_anthropic(newer)
    assert "temperature" not in out and "top_p" not in out and newer.dropped == ["temperature"]  # top_p 1: nothing
    assert ant._headers(newer)["anthropic-version"] == "2026-10-21"
    assert ant._headers(call("anthropic", body))["anthropic-version"] == ant.API_VERSION == "2023-06-01"


def test_anthropic_schema_is_normalised_to_the_structured_outputs_subset() -> None:
    schema = {
        "type": "object",
        "description": "A person",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "name": {"type": "string", "minLength": 1, "pattern": "^[A-Z]", "format": "name"},
            "born": {"type": "string", "format": "date"},
            "nickname": {"type": ["string", "null"], "description": "if any"},
            "middle": {"type": "string", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
            "pets": {"type": "array", "items": {"$ref": "#/$defs/pet"}, "minItems": 1},
            "kind": {"oneOf": [{"const": "a"}, {"enum": ["b", "c"]}]},
        },
        "required": ["age", "name"],
        "$defs": {"pet": {"type": "object", "properties": {"species": {"type": "string"}}}},
    }
    out = ant.anthropic_schema(schema)
    assert out is not None
    props = out["properties"]
    assert list(props) == list(schema["properties"])  # property order kept
    assert out["additionalProperties"] is False and out["required"] == ["age", "name"]
    assert out["$defs"]["pet"]["additionalProperties"] is False  # every object is closed
    # What Anthropic cannot enforce is told to the model in the description.
    assert props["age"] == {"type": "integer", "description": "{minimum: 0, maximum: 150}"}
    assert props["name"]["type"] == "string" and "format" not in props["name"]
    assert props["name"]["description"] == '{minLength: 1, pattern: "^[A-Z]", format: "name"}'
    assert props["born"] == {"type": "string", "format": "date"}
    assert props["nickname"] == {"description": "if any", "anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["middle"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["tags"]["description"] == "{minItems: 3, uniqueItems: true}" and "minItems" not in props["tags"]
    assert props["pets"] == {"type": "array", "items": {"$ref": "#/$defs/pet"}, "minItems": 1}
    assert props["kind"] == {"anyOf": [{"const": "a"}, {"enum": ["b", "c"]}]}
    # An object open to other properties cannot be said: Anthropic closes every object.
    assert ant.anthropic_schema({"type": "object", "additionalProperties": True}) is None
    assert ant.anthropic_schema({"type": "object", "additionalProperties": {"type": "string"}}) is None


def test_anthropic_json_schema_goes_native_beside_tools_and_thinking() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "strict": True, "schema": {"type": "object"}}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER],
        "response_format": fmt,
        "reasoning_effort": "low",
    }
    native = call("anthropic", body, capabilities=("json_schema",))
    out = ant.to_anthropic(native)
    assert out["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object", "properties": {}, "additionalProperties": False}}
    }
    assert [t["name"] for t in out["tools"]] == ["get_weather"] and "tool_choice" not in out
    assert out["thinking"]["type"] == "enabled" and not native.dropped
    assert not ant._json_mode(native, out)  # the JSON comes back as text, read as any reply
    # A model without native structured outputs answers through the forced JSON tool, which
    # cannot sit beside the client's tools: a 400 naming response_format.
    with pytest.raises(GatewayError) as err:
        ant.to_anthropic(call("anthropic", body))
    assert err.value.param == "response_format"
    # ... as does a schema Anthropic's subset cannot say, even on a model that has them.
    open_fmt = {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object", "additionalProperties": True}},
    }
    lone = {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": open_fmt}
    forced = call("anthropic", lone, capabilities=("json_schema",))
    out = ant.to_anthropic(forced)
    assert "output_config" not in out and out["tool_choice"] == {"type": "tool", "name": ant.JSON_TOOL}
    assert ant._json_mode(forced, out)


def test_chunk_writer_delta_is_the_chunk_with_one_choice() -> None:
    from services.edge.providers.common import ChunkWriter

    out = ChunkWriter("chatcmpl-a", 'model "q"')
    out.id = "chatcmpl-b"
    for delta, finish in (({"content": 'he said "hi"\n'}, None), ({}, "stop"), ({"tool_calls": [{"index": 0}]}, None)):
        fast = out.delta(2, delta, finish)
        slow = out.chunk([{"index": 2, "delta": delta, "logprobs": None, "finish_reason": finish}])
        assert fast == slow and json.loads(fast[6:])["id"] == "chatcmpl-b"


def test_nulls_and_neutral_values_are_not_refused() -> None:
    """Clients often send defaults explicitly (``n: 1``, penalties 0, ``store: false``) or
    nulls: they ask for nothing a provider lacks, so they pass without being dropped."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "n": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "logprobs": False,
        "store": False,
        "seed": None,
        "metadata": {},
        "service_tier": "auto",
        "modalities": ["text"],
    }
    anthropic_call = call("anthropic", body)
    out = ant.to_anthropic(anthropic_call)
    assert anthropic_call.dropped == [] and "seed" not in out and "frequency_penalty" not in out
    gemini_call = call("gemini", body)
    asyncio.run(gem.to_gemini(gemini_call))
    assert gemini_call.dropped == []
    # ... but a value that asks for something still does.
    for name, value in (
        ("n", 2),
        ("presence_penalty", 0.5),
        ("logprobs", True),
        ("logit_bias", {"1": 5}),
        ("store", True),
    ):
        with pytest.raises(GatewayError) as err:
            ant.to_anthropic(call("anthropic", dict(body, **{name: value})))
        assert err.value.param == name


def test_image_jpg_is_read_as_jpeg() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    block = ant.to_anthropic(call("anthropic", body))["messages"][0]["content"][0]
    assert block["source"]["media_type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("gemini-2.5-flash", "gemini-2.5-flash"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet@20240620"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("flash/../pro", "flash%2F..%2Fpro"),
        ("gpt-4o?api-version=1#x", "gpt-4o%3Fapi-version%3D1%23x"),
        ("a%2Fb", "a%252Fb"),
    ],
)
def test_a_model_is_one_segment_of_an_upstream_path(name: str, segment: str) -> None:
    assert common.path_segment(name) == segment


# --- found by tests/unit/test_translator_properties.py -----------------------------------------


def _tool_turns(signed: bool) -> dict[str, Any]:
    extra = {"extra_content": {"google": {"thought_signature": "SIG"}}} if signed else {}
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather and time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}, **extra},
                    {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        ],
        "tools": [WEATHER],
    }


def test_gemini_gets_the_documented_sentinel_for_tool_calls_it_did_not_sign() -> None:
    """Calls made by another model (or a history the client rebuilt) have no signature, which
    Gemini 3 refuses; the first call of the turn carries Google's sentinel, a real one stays."""
    unsigned = asyncio.run(gem.to_gemini(call("gemini", _tool_turns(signed=False))))["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in unsigned] == [gem.SKIP_SIGNATURE, None]
    signed = asyncio.run(gem.to_gemini(call("gemini", _tool_turns(signed=True))))["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in signed] == ["SIG", None]


@pytest.mark.parametrize(("top_p", "p"), [(1.0, 0.99), (0.0, 0.01), (0.5, 0.5)])
def test_cohere_gets_top_p_within_the_range_it_takes(top_p: float, p: float) -> None:
    from services.edge.providers import cohere as coh

    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "top_p": top_p}
    assert coh.to_cohere(call("cohere", body))["p"] == p


def test_tool_parameters_that_are_not_an_object_schema_are_a_400_naming_them() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "tools": [tool]}
    with pytest.raises(GatewayError) as refused:
        ant.to_anthropic(call("anthropic", body))
    assert refused.value.status == 400 and refused.value.param == "tools[0].function.parameters"
