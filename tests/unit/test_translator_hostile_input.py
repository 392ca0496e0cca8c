"""Whatever a confused or hostile client sends, a translator answers with a 400 in OpenAI's
shape (a GatewayError), never an exception that would become a 500. The route's own checks
run first, as they do in the gateway.

Every leaf and container of a rich, valid request is replaced in turn by values of the wrong
type, and both translators are run on each variant."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.edge.body import check_chat
from services.edge.providers import anthropic as ant
from services.edge.providers import bedrock as bed
from services.edge.providers import cohere as coh
from services.edge.providers import gemini as gem
from services.edge.providers.base import Call
from shared.catalog import ProviderConfig, Route
from shared.errors import GatewayError

VALID: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "s"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "q"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERg=="}},
            ],
        },
        {
            "role": "assistant",
            "content": "a",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
            "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object", "properties": {}}},
    },
    "stop": ["x"],
    "temperature": 0.5,
    "max_tokens": 100,
    "reasoning_effort": "low",
}  # fmt: skip
BAD_VALUES: list[Any] = [None, "", "x", 0, -1, 1.5, True, [], [None], [1], [{}], {}, {"type": 1}, {"a": [1]}]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _variant(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = copy.deepcopy(value)
    return body


def _call(provider: str, body: dict[str, Any], capabilities: tuple[str, ...]) -> Call:
    cfg = ProviderConfig(api=provider, base_url="http://x")
    route = Route(model="m", provider=provider, upstream_model="m", capabilities=capabilities)
    return Call(route, cfg, None, body, "r", None, True)  # type: ignore[arg-type]


VARIANTS = [(path, value) for path in _paths(VALID) if path[0] != "model" for value in BAD_VALUES]


@pytest.mark.parametrize(
    ("provider", "capabilities"),
    # Anthropic twice: a model with native structured outputs, and one answering through the JSON tool.
    [("anthropic", ("json_schema",)), ("anthropic", ()), ("gemini", ("json_schema",)), ("bedrock", ()), ("cohere", ())],
)
def test_wrong_types_anywhere_are_400s_not_crashes(provider: str, capabilities: tuple[str, ...]) -> None:
    crashes = []
    for path, value in VARIANTS:
        body = _variant(path, value)
        try:
            check_chat(body)  # what the route checks before any adapter runs
            if provider == "anthropic":
                ant.to_anthropic(_call(provider, body, capabilities))
            elif provider == "bedrock":
                bed.to_converse(_call(provider, body, capabilities))
            elif provider == "cohere":
                coh.to_cohere(_call(provider, body, capabilities))
            else:
                asyncio.run(gem.to_gemini(_call(provider, body, capabilities)))
        except GatewayError as exc:
            assert exc.status == 400, (path, value, exc.status)
        except Exception as exc:  # a crash: would be a 500
            crashes.append(f"{'.'.join(map(str, path))} = {value!r}: {type(exc).__name__}: {exc}")
    assert not crashes, f"{len(crashes)} of {len(VARIANTS)} variants crash, e.g.:\n" + "\n".join(crashes[:40])


# --- replies: a provider answering in an unexpected shape is a 502, never a crash ------------
#
# A reply (or stream event) is checked against the shape the gateway reads before it is
# translated (services/edge/providers/*_replies.py). The check and the translators must agree:
# whatever the check lets through, the translator reads without an exception (an exception
# there is the gateway's own bug, a 500).


def _reply_variants(reply: dict[str, Any]) -> list[dict[str, Any]]:
    variants = []
    for path in _paths(reply):
        for value in BAD_VALUES:
            body = copy.deepcopy(reply)
            target = body
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = copy.deepcopy(value)
            variants.append(body)
    return variants


BEDROCK_REPLY: dict[str, Any] = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "c2ln"}}},
                {"text": "hi"},
                {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}},
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {"inputTokens": 3, "outputTokens": 4, "cacheReadInputTokens": 1},
}
BEDROCK_EVENTS: list[dict[str, Any]] = [
    {"type": "messageStart", "role": "assistant"},
    {"type": "contentBlockDelta", "contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}},
    {"type": "contentBlockDelta", "contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}},
    {"type": "contentBlockStop", "contentBlockIndex": 0},
    {"type": "contentBlockDelta", "contentBlockIndex": 1, "delta": {"text": "hi"}},
    {"type": "contentBlockStart", "contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}},
    {"type": "contentBlockDelta", "contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a": 1}'}}},
    {"type": "contentBlockStop", "contentBlockIndex": 2},
    {"type": "messageStop", "stopReason": "tool_use"},
    {"type": "metadata", "usage": {"inputTokens": 3, "outputTokens": 4}},
]
COHERE_REPLY: dict[str, Any] = {
    "id": "r1",
    "finish_reason": "TOOL_CALL",
    "message": {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "hi"}],
        "tool_plan": "I will call f.",
        "tool_calls": [{"id": "f_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
    },
    "usage": {"tokens": {"input_tokens": 3.0, "output_tokens": 4.0}, "cached_tokens": 1.0},
}
COHERE_EVENTS: list[dict[str, Any]] = [
    {"type": "message-start", "id": "r1", "delta": {"message": {"role": "assistant"}}},
    {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"thinking": "hmm"}}}},
    {"type": "content-delta", "index": 1, "delta": {"message": {"content": {"text": "hi"}}}},
    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}},
    {
        "type": "tool-call-start",
        "index": 0,
        "delta": {"message": {"tool_calls": {"id": "f_1", "type": "function", "function": {"name": "f"}}}},
    },
    {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}}},
    {"type": "tool-call-end", "index": 0},
    {
        "type": "message-end",
        "delta": {"finish_reason": "TOOL_CALL", "usage": {"tokens": {"input_tokens": 3.0, "output_tokens": 4.0}}},
    },
]


def test_odd_replies_are_502s_or_read() -> None:
    from pydantic import ValidationError

    from services.edge.providers import anthropic_replies, bedrock_replies, cohere_replies, gemini_replies
    from services.edge.providers.base import StreamMeter
    from services.edge.providers.wire import read_reply
    from tests.unit.test_translators import ANTHROPIC_REPLY, GEMINI_REPLY, anthropic_events, gemini_chunks

    crashes = []
    for name, schema, reply, translate in (
        ("anthropic", anthropic_replies.REPLY, ANTHROPIC_REPLY, lambda r: ant.to_openai(r, "m", json_mode=False)),
        ("gemini", gemini_replies.REPLY, GEMINI_REPLY, lambda r: gem.to_openai(r, "m")),
        ("bedrock", bedrock_replies.REPLY, BEDROCK_REPLY, lambda r: bed.to_openai(r, "m")),
        ("cohere", cohere_replies.REPLY, COHERE_REPLY, lambda r: coh.to_openai(r, "m")),
    ):
        for variant in _reply_variants(reply):
            try:
                raw, _ = read_reply(name, schema, variant, lambda v=variant, t=translate: t(v))  # type: ignore[misc]
                json.loads(raw)
            except GatewayError as exc:
                assert exc.status == 502 and "unexpected shape" in exc.message
            except Exception as exc:
                crashes.append(f"{name} reply: {type(exc).__name__}: {exc}")
    # Streams: each event of a good stream replaced by odd shapes. An event the check lets
    # through is fed; feed() may raise only a GatewayError (the provider's own error event).
    good_streams = (
        (
            "anthropic",
            anthropic_replies.EVENT,
            anthropic_events(ANTHROPIC_REPLY),
            lambda: ant.AnthropicStream("m", StreamMeter(), True, False),
        ),
        (
            "gemini",
            gemini_replies.REPLY,
            gemini_chunks(GEMINI_REPLY),
            lambda: gem.GeminiStream("m", StreamMeter(), True),
        ),
        ("bedrock", bedrock_replies.EVENT, BEDROCK_EVENTS, lambda: bed.BedrockStream("m", StreamMeter(), True)),
        ("cohere", cohere_replies.EVENT, COHERE_EVENTS, lambda: coh.CohereStream("m", StreamMeter(), True)),
    )
    for name, schema, events, machine_factory in good_streams:
        for k, event in enumerate(events):
            for variant in _reply_variants(event):
                machine = machine_factory()
                try:
                    for ev in [*events[:k], variant, *events[k + 1 :]]:
                        schema.validate_python(ev)
                        machine.feed(ev)
                    machine.eof()
                    machine.close()
                except (GatewayError, ValidationError):
                    pass
                except Exception as exc:
                    crashes.append(f"{name} stream event {k}: {type(exc).__name__}: {exc}")
    assert not crashes, "\n".join(crashes[:20])
