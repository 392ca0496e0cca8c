"""The conformance matrix: provider x feature x mode (streaming or not).

Each feature is a check that drives the running stack with the official ``openai`` SDK and
asserts what an OpenAI client must see. A cell that cannot pass says why in ``NOT_APPLICABLE``;
``docs/compatibility.md`` is generated from this module (``python -m tests.conformance.report``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import OpenAI

# provider -> the model the matrix calls it with (all answered by the simulators)
PROVIDERS: dict[str, str] = {
    "openai": "gpt-4.1",
    "azure": "azure/gpt-4.1-deployment",
    "mistral": "mistral-large-latest",
    "selfhosted": "selfhosted/llama-3.1-8b",
    "anthropic": "claude-sonnet-4-6",
    "gemini": "gemini-2.5-flash",
    "vertex": "vertex/gemini-2.5-flash",
    "bedrock": "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
    "cohere": "command-a-03-2025",
}
PROVIDER_TITLES = {
    "openai": "OpenAI",
    "azure": "Azure OpenAI",
    "mistral": "OpenAI-compatible (Mistral; same code for xAI, DeepSeek, Groq, Together, Fireworks, OpenRouter)",
    "selfhosted": "Self-hosted OpenAI-compatible (vLLM, Ollama, llama.cpp) by base URL",
    "anthropic": "Anthropic Messages",
    "gemini": "Google Gemini",
    "vertex": "Google Vertex AI (Gemini through a project, service-account auth)",
    "bedrock": "Amazon Bedrock Converse (Claude on Bedrock; the same code for Nova, Llama and the rest)",
    "cohere": "Cohere Chat API v2 (the Command models)",
}
MODES = ("non-stream", "stream")
PASS_THROUGH = ("openai", "azure", "mistral", "selfhosted")
TRANSLATED = ("anthropic", "gemini", "vertex", "bedrock", "cohere")
GEMINI_WIRE = ("gemini", "vertex")  # Vertex AI speaks Gemini's wire format
# Providers whose 429 carries no retry-after (AWS's throttling answer, Cohere's rate limit).
NO_RETRY_AFTER = ("bedrock", "cohere")

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n").decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
# A strict schema with what providers differ on: $defs references, nullable unions, no extras.
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "nickname": {"type": ["string", "null"]},
        "address": {"$ref": "#/$defs/address"},
    },
    "required": ["name", "age", "nickname", "address"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        }
    },
}


@dataclass
class Ctx:
    """What a check gets: the SDK client, the provider, its model, the mode, the stack."""

    client: OpenAI
    provider: str
    model: str
    stream: bool
    image_url: str  # an image the gateway may fetch (the test image server)
    # Puts the provider's keys back in service after a test made the provider refuse them.
    reactivate: Callable[[str], None] = lambda provider: None
    # The body of the last request the provider's simulator received.
    sent: Callable[[], dict[str, Any]] = lambda: {}


@dataclass
class Result:
    """A chat answer, the same whether it was streamed or not (chunks are assembled)."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reasons: dict[int, str] = field(default_factory=dict)
    contents: dict[int, str] = field(default_factory=dict)
    usage: Any = None
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)
    extra_content: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunk_count: int = 0
    last_chunk_choices: int = -1
    logprobs: list[Any] = field(default_factory=list)

    @property
    def finish(self) -> str:
        return self.finish_reasons.get(0, "")

    def assistant_message(self) -> dict[str, Any]:
        """The assistant turn to send back, with what the next turn needs (signatures)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.thinking_blocks:
            message["thinking_blocks"] = self.thinking_blocks
        if self.extra_content:
            message["extra_content"] = self.extra_content
        return message


def chat(ctx: Ctx, **kwargs: Any) -> Result:
    kwargs.setdefault("model", ctx.model)
    if not ctx.stream:
        raw = ctx.client.chat.completions.with_raw_response.create(**kwargs)
        resp = raw.parse()
        result = Result(headers=dict(raw.headers), usage=resp.usage)
        for choice in resp.choices:
            result.finish_reasons[choice.index] = choice.finish_reason
            result.contents[choice.index] = choice.message.content or ""
            if choice.logprobs is not None and choice.logprobs.content:
                result.logprobs.extend(choice.logprobs.content)
        message = resp.choices[0].message
        result.content = message.content or ""
        extra = message.model_extra or {}
        result.reasoning = extra.get("reasoning_content") or ""
        result.thinking_blocks = extra.get("thinking_blocks") or []
        result.extra_content = extra.get("extra_content")
        result.tool_calls = [tc.model_dump(exclude_none=True) for tc in message.tool_calls or []]
        return result
    kwargs["stream"] = True
    raw = ctx.client.chat.completions.with_raw_response.create(**kwargs)
    result = Result(headers=dict(raw.headers))
    calls: dict[int, dict[str, Any]] = {}
    for chunk in raw.parse():
        result.chunk_count += 1
        result.last_chunk_choices = len(chunk.choices)
        if chunk.usage is not None:
            result.usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            extra = delta.model_extra or {}
            if delta.content:
                result.contents[choice.index] = result.contents.get(choice.index, "") + delta.content
            if choice.logprobs is not None and choice.logprobs.content:
                result.logprobs.extend(choice.logprobs.content)
            if choice.finish_reason:
                result.finish_reasons[choice.index] = choice.finish_reason
            if choice.index != 0:
                continue
            result.reasoning += extra.get("reasoning_content") or ""
            result.thinking_blocks.extend(extra.get("thinking_blocks") or [])
            if extra.get("extra_content"):
                result.extra_content = extra["extra_content"]
            for tc in delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"type": "function", "function": {"name": "", "arguments": ""}})
                if tc.id:
                    assert "id" not in slot, "a tool call's id must come once, on its first delta"
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["function"]["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["function"]["arguments"] += tc.function.arguments
                if (tc.model_extra or {}).get("extra_content"):
                    slot["extra_content"] = tc.model_extra["extra_content"]
    result.content = result.contents.get(0, "")
    result.tool_calls = [calls[i] for i in sorted(calls)]
    assert sorted(calls) == list(range(len(calls))), f"tool-call indexes must count from 0: {sorted(calls)}"
    return result


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --- features ---------------------------------------------------------------------------------


def f_text(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("hello there"))
    assert r.content == "Reply 0 to: hello there", r.content
    assert r.finish == "stop"
    if ctx.stream:
        assert r.chunk_count >= 3, "a stream comes in several chunks"


def f_system(ctx: Ctx) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "answer in English"},
        {"role": "user", "content": "hi"},
    ]
    r = chat(ctx, messages=messages)
    assert "be brief" in r.content and "answer in English" in r.content, r.content


def f_multi_turn(ctx: Ctx) -> None:
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
    ]
    r = chat(ctx, messages=messages)
    assert r.content.startswith("Reply 0 to: second question"), r.content


def f_tools(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("weather in Paris?"), tools=[WEATHER])
    assert r.finish == "tool_calls", r.finish
    assert len(r.tool_calls) == 1
    call = r.tool_calls[0]
    assert call["id"] and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}


def f_parallel_tools(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("weather and time in Paris?"), tools=[WEATHER, TIME], tool_choice="required")
    assert [c["function"]["name"] for c in r.tool_calls] == ["get_weather", "get_time"]
    assert len({c["id"] for c in r.tool_calls}) == 2, "each call has its own id"
    assert json.loads(r.tool_calls[1]["function"]["arguments"]) == {"zone": "zone-value"}


def f_tool_choice(ctx: Ctx) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    r = chat(ctx, messages=user("time?"), tools=[WEATHER, TIME], tool_choice=named)
    assert [c["function"]["name"] for c in r.tool_calls] == ["get_time"]
    r = chat(ctx, messages=user("no tools please"), tools=[WEATHER, TIME], tool_choice="none")
    assert not r.tool_calls and r.finish == "stop" and r.content.startswith("Reply 0"), r


def f_tool_results(ctx: Ctx) -> None:
    first = chat(ctx, messages=user("weather and time?"), tools=[WEATHER, TIME])
    assert len(first.tool_calls) == 2
    messages = [*user("weather and time?"), first.assistant_message()]
    for call, value in zip(first.tool_calls, ("sunny", "noon"), strict=True):
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"value": value})})
    r = chat(ctx, messages=messages, tools=[WEATHER, TIME])
    assert r.finish == "stop"
    assert "get_weather=" in r.content and "sunny" in r.content and "noon" in r.content, r.content


def f_vision_base64(ctx: Ctx) -> None:
    content = [
        {"type": "text", "text": "two pictures"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
    ]
    r = chat(ctx, messages=[{"role": "user", "content": content}])
    assert r.content.count("image image/png 70 bytes") == 2, r.content


def f_vision_url(ctx: Ctx) -> None:
    content = [{"type": "text", "text": "a picture"}, {"type": "image_url", "image_url": {"url": ctx.image_url}}]
    r = chat(ctx, messages=[{"role": "user", "content": content}])
    if ctx.provider in (*GEMINI_WIRE, "bedrock"):  # fetched by the gateway, sent inline
        assert "image image/png 70 bytes" in r.content, r.content
    else:  # the provider fetches URLs itself
        assert ctx.image_url in r.content, r.content


def f_file_pdf(ctx: Ctx) -> None:
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}}
    r = chat(ctx, messages=[{"role": "user", "content": [{"type": "text", "text": "read"}, part]}])
    assert "document application/pdf" in r.content, r.content


def f_audio_video(ctx: Ctx) -> None:
    wav = base64.b64encode(b"RIFF....WAVEfmt ").decode()
    mp4 = base64.b64encode(b"\x00\x00\x00\x18ftypmp42").decode()
    content = [
        {"type": "text", "text": "listen and watch"},
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
        {"type": "file", "file": {"filename": "clip.mp4", "file_data": f"data:video/mp4;base64,{mp4}"}},
    ]
    r = chat(ctx, messages=[{"role": "user", "content": content}])
    assert "audio audio/wav 16 bytes" in r.content and "video video/mp4 12 bytes" in r.content, r.content


def f_json_object(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("give json"), response_format={"type": "json_object"})
    assert isinstance(json.loads(r.content), dict), r.content
    assert r.finish == "stop"


def f_json_schema(ctx: Ctx) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON_SCHEMA}}
    r = chat(ctx, messages=user("a person"), response_format=fmt)
    value = json.loads(r.content)
    assert list(value) == ["name", "age", "nickname", "address"], value  # property order kept
    assert isinstance(value["age"], int) and value["address"] == {"city": "Paris"}
    assert r.finish == "stop"


def f_json_with_tools(ctx: Ctx) -> None:
    """An agent turn in JSON mode, reasoning on: a tool call first, then, after its result, the
    answer in the schema. On Anthropic this needs native structured outputs (a forced JSON tool
    could not sit beside the client's tools, nor beside thinking)."""
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON_SCHEMA}}
    ask = {"tools": [WEATHER], "response_format": fmt, "reasoning_effort": "low"}
    first = chat(ctx, messages=user("a person"), **ask)
    assert first.tool_calls and first.finish == "tool_calls", first
    messages = [*user("a person"), first.assistant_message()]
    messages.append({"role": "tool", "tool_call_id": first.tool_calls[0]["id"], "content": "sunny"})
    r = chat(ctx, messages=messages, **ask)
    value = json.loads(r.content)
    assert list(value) == ["name", "age", "nickname", "address"] and value["address"] == {"city": "Paris"}, value
    assert r.finish == "stop"
    if ctx.provider == "anthropic":
        sent = ctx.sent()
        assert sent["output_config"]["format"]["type"] == "json_schema", sent
        assert [t["name"] for t in sent["tools"]] == ["get_weather"] and "thinking" in sent, sent


def f_reasoning(ctx: Ctx) -> None:
    r = chat(
        ctx,
        messages=user("think"),
        reasoning_effort="low",
        stream_options={"include_usage": True} if ctx.stream else openai.NOT_GIVEN,
    )
    if ctx.provider in TRANSLATED:
        assert r.reasoning == "Thinking about: think", r.reasoning
    assert r.content.startswith("Reply 0 to: think")
    if ctx.provider not in ("bedrock", "cohere"):  # they count reasoning within the output tokens
        assert r.usage.completion_tokens_details.reasoning_tokens == 3, r.usage


def f_reasoning_roundtrip(ctx: Ctx) -> None:
    """A signed reasoning turn with a tool call, sent back: the provider accepts the next turn
    only if the signatures came back intact."""
    first = chat(ctx, messages=user("weather?"), tools=[WEATHER], reasoning_effort="low")
    assert first.tool_calls
    if ctx.provider in ("anthropic", "bedrock"):
        assert first.thinking_blocks and first.thinking_blocks[0]["signature"]
    if ctx.provider in GEMINI_WIRE:
        assert first.tool_calls[0]["extra_content"]["google"]["thought_signature"]
    messages = [*user("weather?"), first.assistant_message()]
    messages.append({"role": "tool", "tool_call_id": first.tool_calls[0]["id"], "content": "sunny"})
    r = chat(ctx, messages=messages, tools=[WEATHER], reasoning_effort="low")
    assert "sunny" in r.content, r.content
    # ... and a signature that was tampered with is refused by the provider, as a 400.
    broken = first.assistant_message()
    if ctx.provider in ("anthropic", "bedrock"):
        broken["thinking_blocks"] = [dict(broken["thinking_blocks"][0], signature="AAAA")]
    else:
        tampered = {"google": {"thought_signature": "AAAA"}}
        broken["tool_calls"] = [dict(broken["tool_calls"][0], extra_content=tampered)]
        # A call with no signature at all (another model's, a history rebuilt without it)
        # goes with Google's documented sentinel, which Gemini 3 accepts.
        unsigned = dict(first.assistant_message())
        unsigned["tool_calls"] = [dict(unsigned["tool_calls"][0], extra_content=None)]
        again = chat(ctx, messages=[messages[0], unsigned, messages[2]], tools=[WEATHER], reasoning_effort="low")
        assert "sunny" in again.content, again.content
    messages[1] = broken
    try:
        chat(ctx, messages=messages, tools=[WEATHER], reasoning_effort="low")
    except openai.BadRequestError as exc:
        assert "signature" in str(exc).lower()
    else:
        raise AssertionError("a broken signature must fail the next turn")


def f_stop(ctx: Ctx) -> None:
    ask: dict[str, Any] = {"messages": user("alpha beta gamma"), "stop": ["beta"], "temperature": 0.2, "top_p": 0.9}
    if ctx.provider == "anthropic":  # Anthropic takes temperature or top_p, not both
        try:
            chat(ctx, **ask)
        except openai.BadRequestError as exc:
            assert exc.body["param"] == "top_p", exc.body  # type: ignore[index]
        else:
            raise AssertionError("temperature with top_p must be refused for Anthropic, naming top_p")
        top_p_only = chat(ctx, **dict(ask, temperature=openai.NOT_GIVEN))
        assert top_p_only.content == "Reply 0 to: alpha " and ctx.sent()["top_p"] == 0.9
        assert "temperature" not in ctx.sent()
        ask["extra_headers"] = {"x-switchyard-drop-params": "true"}
    r = chat(ctx, **ask)
    assert r.content == "Reply 0 to: alpha ", repr(r.content)
    assert r.finish == "stop"
    sent = ctx.sent()
    if ctx.provider in GEMINI_WIRE:
        config = sent["generationConfig"]
        assert (config["temperature"], config["topP"], config["stopSequences"]) == (0.2, 0.9, ["beta"])
    elif ctx.provider == "bedrock":
        config = sent["inferenceConfig"]
        assert (config["temperature"], config["topP"], config["stopSequences"]) == (0.2, 0.9, ["beta"])
    elif ctx.provider == "cohere":
        assert (sent["temperature"], sent["p"], sent["stop_sequences"]) == (0.2, 0.9, ["beta"]), sent
    elif ctx.provider == "anthropic":
        assert r.headers.get("x-switchyard-dropped-params") == "top_p"
        assert (sent["temperature"], sent["stop_sequences"]) == (0.2, ["beta"]) and "top_p" not in sent
    else:
        assert (sent["temperature"], sent["top_p"], sent["stop"]) == (0.2, 0.9, ["beta"])


def f_max_tokens(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("one two three four five"), max_completion_tokens=3)
    assert r.content == "Reply 0 to:", repr(r.content)
    assert r.finish == "length"
    r = chat(ctx, messages=user("one two three four five"), max_tokens=4)
    assert r.finish == "length"


def f_n(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("twice"), n=2, seed=7)
    assert r.contents == {0: "Reply 0 to: twice", 1: "Reply 1 to: twice"}, r.contents
    assert r.finish_reasons == {0: "stop", 1: "stop"}
    sent = ctx.sent()
    seed = sent["generationConfig"]["seed"] if ctx.provider in GEMINI_WIRE else sent["seed"]
    assert seed == 7


def f_logprobs(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("probable"), logprobs=True, top_logprobs=2)
    assert r.logprobs, "logprobs come back"
    first = r.logprobs[0]
    assert first.token == "Reply " and first.logprob == -0.25 and len(first.top_logprobs) == 2


def f_user(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("who am i"), user="end-user-42")
    assert r.content.startswith("Reply 0")
    sent = ctx.sent()
    if ctx.provider == "anthropic":
        assert sent["metadata"] == {"user_id": "end-user-42"}
    elif ctx.provider in (*GEMINI_WIRE, "bedrock", "cohere"):  # no such field: metered as request_user
        assert "end-user-42" not in json.dumps(sent)
    else:
        assert sent["user"] == "end-user-42"


def f_usage(ctx: Ctx) -> None:
    options = {"include_usage": True} if ctx.stream else openai.NOT_GIVEN
    r = chat(ctx, messages=user("count me"), stream_options=options)
    usage = r.usage
    assert usage is not None, "usage is reported"
    if ctx.stream:
        assert r.last_chunk_choices == 0, "the usage chunk comes last, with empty choices"
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens > 0, "cached tokens are reported"
    assert usage.completion_tokens_details is not None


def f_no_usage_unasked(ctx: Ctx) -> None:
    r = chat(ctx, messages=user("quiet"))
    assert r.usage is None and r.last_chunk_choices == 1, "no usage chunk unless asked for"


def f_content_filter(ctx: Ctx) -> None:
    r = chat(ctx, model=ctx.model.replace("-deployment", "") + "-filtered", messages=user("something bad"))
    assert r.finish == "content_filter", r.finish


def f_unsupported_param(ctx: Ctx) -> None:
    param = "seed" if ctx.provider == "anthropic" else "logit_bias"
    value: Any = 7 if param == "seed" else {"50256": -100}
    try:
        chat(ctx, messages=user("x"), **{param: value})
    except openai.BadRequestError as exc:
        assert exc.body["param"] == param and param in exc.message  # type: ignore[index]
    else:
        raise AssertionError("an unsupported parameter must be refused")
    r = chat(ctx, messages=user("x"), extra_headers={"x-switchyard-drop-params": "true"}, **{param: value})
    assert r.headers.get("x-switchyard-dropped-params") == param
    assert r.content.startswith("Reply 0")


ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    413: openai.APIStatusError,
    429: openai.RateLimitError,
    500: openai.InternalServerError,
    503: openai.InternalServerError,
    529: openai.InternalServerError,
}
CLIENT_STATUS = {500: 502, 529: 503}


def f_errors(ctx: Ctx) -> None:
    statuses = [400, 404, 413, 429, 500, 503]
    if ctx.provider == "anthropic":
        statuses.append(529)
    try:
        _errors(ctx, [*statuses, 401])
    finally:  # a 401 or 403 takes the provider key out of service: put it back
        ctx.reactivate(ctx.provider)
    try:
        _errors(ctx, [403])
    finally:
        ctx.reactivate(ctx.provider)


def _errors(ctx: Ctx, statuses: list[int]) -> None:
    for status in statuses:
        model = f"{ctx.model.replace('-deployment', '')}-status-{status}"
        try:
            chat(ctx, model=model, messages=user("x"))
        except openai.APIStatusError as exc:
            assert isinstance(exc, ERRORS[status]), (status, type(exc))
            assert exc.status_code == CLIENT_STATUS.get(status, status), (status, exc.status_code)
            assert isinstance(exc.body, dict) and exc.body.get("message"), exc.body
            if status == 429 and ctx.provider not in NO_RETRY_AFTER:
                assert exc.response.headers.get("retry-after") == "7"
        else:
            raise AssertionError(f"HTTP {status} from the provider must raise")


def f_midstream_error(ctx: Ctx) -> None:
    try:
        chat(ctx, model=ctx.model.replace("-deployment", "") + "-midstream-error", messages=user("x"))
    except openai.APIError as exc:
        assert not isinstance(exc, openai.APIStatusError) or exc.status_code >= 500
    else:
        raise AssertionError("an error in the middle of a stream must reach the client as an error")


def f_truncated(ctx: Ctx) -> None:
    try:
        chat(ctx, model=ctx.model.replace("-deployment", "") + "-truncate", messages=user("x"))
    except openai.APIError as exc:
        assert "before it finished" in str(exc)
    else:
        raise AssertionError("a cut stream must not end like a finished one")


@dataclass(frozen=True)
class Feature:
    name: str
    title: str
    check: Callable[[Ctx], None]
    modes: tuple[str, ...] = MODES


FEATURES = [
    Feature("text", "Text reply, role, finish_reason stop", f_text),
    Feature("system", "System and developer messages", f_system),
    Feature("multi_turn", "Multi-turn history, content as parts", f_multi_turn),
    Feature("tools", "Tool call (id, name, JSON arguments)", f_tools),
    Feature("parallel_tools", "Parallel tool calls, index per call", f_parallel_tools),
    Feature("tool_choice", "tool_choice named function and none", f_tool_choice),
    Feature("tool_results", "Tool results sent back (consecutive results merged)", f_tool_results),
    Feature("vision_base64", "Images as base64 data URIs, several, detail", f_vision_base64),
    Feature("vision_url", "Images as http(s) URLs", f_vision_url),
    Feature("file_pdf", "PDF file parts", f_file_pdf),
    Feature("audio_video", "Audio (input_audio) and video file parts with a MIME type", f_audio_video),
    Feature("json_object", "response_format json_object", f_json_object),
    Feature("json_schema", "response_format json_schema (strict, $defs, nullable)", f_json_schema),
    Feature("json_with_tools", "json_schema beside tools and reasoning (tool call, then JSON)", f_json_with_tools),
    Feature("reasoning", "reasoning_effort, reasoning_content, reasoning tokens", f_reasoning),
    Feature("reasoning_roundtrip", "Reasoning signatures carried to the next turn", f_reasoning_roundtrip),
    Feature("stop", "stop, temperature, top_p", f_stop),
    Feature("max_tokens", "max_tokens / max_completion_tokens, finish_reason length", f_max_tokens),
    Feature("n", "n choices, seed", f_n),
    Feature("logprobs", "logprobs / top_logprobs", f_logprobs),
    Feature("user", "user", f_user),
    Feature("usage", "Usage (stream: include_usage chunk), cached and reasoning details", f_usage),
    Feature("no_usage_unasked", "No usage chunk unless include_usage", f_no_usage_unasked, ("stream",)),
    Feature("content_filter", "finish_reason content_filter", f_content_filter),
    Feature("unsupported_param", "Unsupported parameter: 400 naming it, or dropped on request", f_unsupported_param),
    Feature("errors", "Provider errors 400-529 as OpenAI errors (SDK exception, status, retry-after)", f_errors),
    Feature(
        "midstream_error", "Provider failure mid-stream ends the stream with an error", f_midstream_error, ("stream",)
    ),
    Feature("truncated", "A cut stream ends with an error, never as finished", f_truncated, ("stream",)),
]

_OPENAI_SIDE = "OpenAI-format providers take the request as sent"
_NO_SIGNATURE = f"{_OPENAI_SIDE}; OpenAI keeps reasoning on its side, there is no signature to carry"
_JUDGED_UPSTREAM = f"{_OPENAI_SIDE}: the provider itself judges every parameter"
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    **{(p, "reasoning_roundtrip"): _NO_SIGNATURE for p in PASS_THROUGH},
    **{(p, "unsupported_param"): _JUDGED_UPSTREAM for p in PASS_THROUGH},
    ("anthropic", "audio_video"): "Anthropic takes no audio or video: such a part is a 400 naming it",
    ("anthropic", "n"): "Anthropic returns one choice: n > 1 is refused with a 400 naming 'n' (or dropped on request)",
    (
        "anthropic",
        "logprobs",
    ): "Anthropic has no logprobs: refused with a 400 naming 'logprobs' (or dropped on request)",
    (
        "bedrock",
        "tool_choice",
    ): "Converse has no tool_choice none: refused with a 400 naming it (or dropped on request)",
    ("bedrock", "audio_video"): "Converse takes images and documents, no audio: such a part is a 400 naming it",
    **{
        ("bedrock", f): "Converse has no JSON mode: response_format is a 400 naming it (or dropped on request)"
        for f in ("json_object", "json_schema", "json_with_tools")
    },
    ("bedrock", "n"): "Converse returns one choice: n > 1 is refused with a 400 naming 'n' (or dropped on request)",
    ("bedrock", "logprobs"): "Converse has no logprobs: refused with a 400 naming 'logprobs' (or dropped on request)",
    (
        "cohere",
        "tool_choice",
    ): "Cohere can require a tool call, not a named one: a named tool_choice is a 400 naming it (none is sent)",
    ("cohere", "file_pdf"): "Cohere's chat takes text and images: a file part is a 400 naming it",
    ("cohere", "audio_video"): "Cohere's chat takes text and images: audio or video is a 400 naming it",
    (
        "cohere",
        "json_with_tools",
    ): "Cohere's JSON mode cannot be combined with tools: refused with a 400 naming response_format",
    ("cohere", "reasoning_roundtrip"): "Cohere's reasoning carries no signature; its tool plan is handed back as text",
    ("cohere", "n"): "Cohere returns one choice: n > 1 is refused with a 400 naming 'n' (or dropped on request)",
    ("cohere", "logprobs"): "not translated for Cohere yet: a 400 naming 'logprobs' (or dropped on request)",
    ("cohere", "content_filter"): "Cohere has no content-filter finish reason (its safety modes refuse in text)",
}


def cells() -> list[tuple[str, str, str]]:
    return [(p, f.name, m) for p in PROVIDERS for f in FEATURES for m in f.modes]
