"""Property tests (hypothesis) for the translators, each provider's side played by its
simulator's own request checks (tests/simulators: what the provider's API accepts):

- any valid OpenAI chat request translates into a request the provider accepts, keeping what
  the user said, or is refused with a 400 naming what the provider cannot carry;
- any JSON Schema a client may send becomes one in the provider's dialect that the provider
  accepts, or a 400 (Anthropic: None, answered through a tool instead);
- any provider reply or stream, valid, altered anywhere or cut anywhere, becomes an OpenAI
  answer or a typed error (a GatewayError, a refused event), never another exception.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.edge.body import check_chat
from services.edge.providers import anthropic as ant
from services.edge.providers import anthropic_replies, bedrock_replies, cohere_replies, gemini_replies
from services.edge.providers import bedrock as bed
from services.edge.providers import cohere as coh
from services.edge.providers import gemini as gem
from services.edge.providers.base import Call, StreamMeter
from services.edge.providers.wire import read_reply
from shared.catalog import ProviderConfig, Route
from shared.errors import GatewayError
from tests.simulators import anthropic_sim, bedrock_sim, cohere_sim, gemini_sim
from tests.unit.test_translator_hostile_input import (
    BEDROCK_EVENTS,
    BEDROCK_REPLY,
    COHERE_EVENTS,
    COHERE_REPLY,
    _paths,
)
from tests.unit.test_translators import ANTHROPIC_REPLY, GEMINI_REPLY, anthropic_events, gemini_chunks

# Deterministic: the same examples in every run, so a failure here is one anyone can replay.
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)  # no lone surrogates
_name = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False), _text
)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    """JSON Schemas as clients write them for tools and structured outputs."""
    leaf = st.one_of(
        st.sampled_from(["string", "integer", "number", "boolean"]).map(lambda t: {"type": t}),
        st.lists(_text, min_size=1, max_size=4, unique=True).map(lambda v: {"type": "string", "enum": v}),
        st.sampled_from(["string", "integer"]).map(lambda t: {"type": [t, "null"]}),
        _text.map(lambda v: {"const": v}),
        st.sampled_from(["date-time", "email", "uuid"]).map(lambda f: {"type": "string", "format": f}),
    )

    def nest(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        obj = st.dictionaries(_name, inner, min_size=1, max_size=4).flatmap(
            lambda props: st.builds(
                lambda required, closed: {
                    "type": "object",
                    "properties": props,
                    "required": required,
                    **({"additionalProperties": False} if closed else {}),
                },
                st.lists(st.sampled_from(sorted(props)), unique=True),
                st.booleans(),
            )
        )
        arrays = inner.map(lambda item: {"type": "array", "items": item})
        unions = st.lists(inner, min_size=2, max_size=3).map(lambda branches: {"anyOf": branches})
        described = st.tuples(inner, _text).map(lambda pair: {**pair[0], "description": pair[1]})
        return st.one_of(obj, arrays, unions, described)

    body = st.recursive(leaf, nest, max_leaves=10)
    with_defs = st.tuples(body, body).map(
        lambda pair: {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/A"}, "b": pair[1]},
            "required": ["a"],
            "$defs": {"A": pair[0]},
        }
    )
    return st.one_of(body, with_defs)


def _as_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's parameters: an object schema (OpenAI refuses any other), ``schema`` as it is if
    it is one, else its one property."""
    if schema.get("type") == "object":
        return schema
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}


_arguments = st.dictionaries(_name, _scalar, max_size=3)


@st.composite
def _chat_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid OpenAI chat request: a system turn or not, then user and assistant turns, the
    assistant's tool calls answered by tool turns, and the options of the request."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(_text)})
    tools = draw(st.lists(st.tuples(_name, _schemas().map(_as_parameters)), max_size=3, unique_by=lambda t: t[0]))
    for turn in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            messages.append({"role": "user", "content": draw(_text)})
        else:
            parts = draw(st.lists(_text, min_size=1, max_size=3))
            messages.append({"role": "user", "content": [{"type": "text", "text": p} for p in parts]})
        if turn == 0 or not draw(st.booleans()):
            continue
        if tools and draw(st.booleans()):
            calls = [
                {
                    "id": f"call_{turn}_{k}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": json.dumps(draw(st.dictionaries(_name, _scalar, max_size=3))),
                    },
                }
                for k, (name, _) in enumerate(draw(st.lists(st.sampled_from(tools), min_size=1, max_size=2)))
            ]
            messages.append({"role": "assistant", "content": draw(st.one_of(st.none(), _text)), "tool_calls": calls})
            for call in calls:
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": draw(_text)})
        else:
            messages.append({"role": "assistant", "content": draw(_text)})
    if messages[-1]["role"] != "user" and messages[-1]["role"] != "tool":
        messages.append({"role": "user", "content": draw(_text)})
    body: dict[str, Any] = {"model": "m", "messages": messages}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": n, "parameters": s}} for n, s in tools]
        body["tool_choice"] = draw(st.sampled_from(["auto", "required", "none"]))
    for key, value in (
        ("temperature", st.floats(0, 1)),
        ("top_p", st.floats(0.01, 1)),
        ("max_tokens", st.integers(1, 4096)),
        ("stop", st.lists(_text, min_size=1, max_size=3)),
        ("stream", st.booleans()),
    ):
        if draw(st.booleans()):
            body[key] = draw(value)
    if "temperature" in body and "top_p" in body:
        del body["top_p"]  # some providers take one of the two; a client choosing both is refused by name
    return body


def _call(provider: str, body: dict[str, Any], capabilities: tuple[str, ...] = ()) -> Call:
    cfg = ProviderConfig(api=provider, base_url="http://x")
    route = Route(model="m", provider=provider, upstream_model="m", capabilities=capabilities)
    return Call(route, cfg, None, body, "r", None, True)  # type: ignore[arg-type]


def _user_words(body: dict[str, Any]) -> list[str]:
    out = []
    for message in body["messages"]:
        if message["role"] == "user":
            content = message["content"]
            out += [content] if isinstance(content, str) else [p["text"] for p in content]
    return out


# --- requests ----------------------------------------------------------------------------------


@PROPERTY
@given(_chat_requests())
def test_any_valid_chat_request_becomes_one_each_provider_accepts(body: dict[str, Any]) -> None:
    check_chat(copy.deepcopy(body))
    translators = {
        "anthropic": lambda b: anthropic_sim.read_prompt(ant.to_anthropic(_call("anthropic", b))),
        "gemini": lambda b: gemini_sim.read_prompt("m", asyncio.run(gem.to_gemini(_call("gemini", b)))),
        "bedrock": lambda b: bedrock_sim.read_prompt("m", bed.to_converse(_call("bedrock", b))[0]),
        "cohere": lambda b: cohere_sim.read_prompt("m", coh.to_cohere(_call("cohere", b))),
    }
    for provider, translate in translators.items():
        request = copy.deepcopy(body)
        try:
            prompt = translate(request)
        except GatewayError as exc:  # what this provider cannot carry, said by name
            assert exc.status == 400, (provider, exc.message)
            continue
        said = json.dumps(prompt.__dict__, default=str, ensure_ascii=False)
        for words in _user_words(body):
            assert json.dumps(words, ensure_ascii=False)[1:-1] in said, (provider, words)


# --- JSON Schema dialects ------------------------------------------------------------------------


@PROPERTY
@given(_schemas())
def test_any_client_schema_becomes_one_in_the_providers_dialect(schema: dict[str, Any]) -> None:
    try:
        converted = gem.gemini_schema(copy.deepcopy(schema))
    except GatewayError as exc:
        assert exc.status == 400
    else:
        gemini_sim.check_schema(converted, "generation_config.response_schema")
    strict = ant.anthropic_schema(copy.deepcopy(schema))
    if strict is not None:  # None: not sayable in Anthropic's subset, answered through a tool instead
        anthropic_sim.check_output_schema(strict, "output_config.format.schema")
        json.dumps(strict)


# --- replies and streams -------------------------------------------------------------------------


@st.composite
def _altered(draw: st.DrawFn, good: dict[str, Any]) -> dict[str, Any]:
    """``good`` with up to three of its parts replaced by any JSON value, or removed."""
    out = copy.deepcopy(good)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(out))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_json)
    return out


_REPLIES = {
    "anthropic": (anthropic_replies.REPLY, ANTHROPIC_REPLY, lambda r: ant.to_openai(r, "m", json_mode=False)),
    "gemini": (gemini_replies.REPLY, GEMINI_REPLY, lambda r: gem.to_openai(r, "m")),
    "bedrock": (bedrock_replies.REPLY, BEDROCK_REPLY, lambda r: bed.to_openai(r, "m")),
    "cohere": (cohere_replies.REPLY, COHERE_REPLY, lambda r: coh.to_openai(r, "m")),
}


@PROPERTY
@given(st.sampled_from(sorted(_REPLIES)), st.data())
def test_any_reply_becomes_an_openai_answer_or_a_502(provider: str, data: st.DataObject) -> None:
    schema, good, translate = _REPLIES[provider]
    reply = data.draw(_altered(good))
    try:
        raw, _ = read_reply(provider, schema, reply, lambda: translate(reply))
    except GatewayError as exc:
        assert exc.status == 502 and "unexpected shape" in exc.message
    else:
        answer = json.loads(raw)
        assert answer["object"] == "chat.completion" and answer["choices"]


_STREAMS = {
    "anthropic": (
        anthropic_replies.EVENT,
        anthropic_events(ANTHROPIC_REPLY),
        lambda: ant.AnthropicStream("m", StreamMeter(), True, False),
    ),
    "gemini": (gemini_replies.REPLY, gemini_chunks(GEMINI_REPLY), lambda: gem.GeminiStream("m", StreamMeter(), True)),
    "bedrock": (bedrock_replies.EVENT, BEDROCK_EVENTS, lambda: bed.BedrockStream("m", StreamMeter(), True)),
    "cohere": (cohere_replies.EVENT, COHERE_EVENTS, lambda: coh.CohereStream("m", StreamMeter(), True)),
}


@PROPERTY
@given(st.sampled_from(sorted(_STREAMS)), st.data())
def test_any_stream_altered_or_cut_becomes_chunks_or_a_typed_error(provider: str, data: st.DataObject) -> None:
    schema, good, machine_factory = _STREAMS[provider]
    events = [copy.deepcopy(e) for e in good]
    for index in data.draw(st.lists(st.integers(0, len(events) - 1), max_size=3)):
        events[index] = data.draw(_altered(events[index]))
    cut = data.draw(st.integers(0, len(events)))  # the connection ends after this many events
    machine = machine_factory()
    try:
        for event in events[:cut]:
            schema.validate_python(event)
            for chunk in machine.feed(event) or ():
                assert isinstance(chunk, bytes)
        machine.eof()
        machine.close()
    except (GatewayError, ValidationError):
        pass  # the provider's error event, or an event refused as it is read: the stream ends in error
