"""The provider simulators, driven by each provider's official Python SDK (``anthropic``,
``google-genai``, ``boto3``, ``cohere``): if a simulator drifted from the real wire format, the SDK would fail to
parse it (stream accumulation checks event order and block indexes)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import cohere
import httpx
import pydantic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.simulators import bedrock_sim as bedrock_sim_module
from tests.simulators import script
from tests.simulators.anthropic_sim import AnthropicSimulator
from tests.simulators.bedrock_sim import BedrockSimulator
from tests.simulators.cohere_sim import CohereSimulator
from tests.simulators.gemini_sim import GeminiSimulator

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def anthropic_sim() -> Iterator[AnthropicSimulator]:
    sim = AnthropicSimulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def gemini_sim() -> Iterator[GeminiSimulator]:
    sim = GeminiSimulator()
    sim.start()
    yield sim
    sim.stop()


def _anthropic(sim: AnthropicSimulator, key: str = "sk-sim") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.base_url, api_key=key, max_retries=0)


def test_anthropic_text_and_usage(anthropic_sim: AnthropicSimulator) -> None:
    user = [{"role": "user", "content": "hi"}]
    with _anthropic(anthropic_sim) as client:
        msg = client.messages.create(model="claude-sim-1", max_tokens=100, system="be brief", messages=user)
    assert msg.content[0].type == "text" and msg.content[0].text == "Reply 0 to: hi [system: be brief]"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.cache_read_input_tokens == 4 and msg.usage.cache_creation_input_tokens == 2
    headers = anthropic_sim.state.requests[-1].headers
    assert "sk-sim" in (headers.get("x-api-key") or headers["Authorization"]) and headers["anthropic-version"]
    # This SDK speaks API version 2026-10-21, which has no sampling options (the SDK dropped
    # them from its signature); the gateway's default version, 2023-06-01, still has them.
    assert headers["anthropic-version"] == "2026-10-21"
    with _anthropic(anthropic_sim) as client, pytest.raises(anthropic.BadRequestError, match="temperature"):
        client.messages.create(model="claude-sim-1", max_tokens=100, messages=user, extra_body={"temperature": 0.5})


class _Address(pydantic.BaseModel):
    city: str


class _Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=150)
    nickname: str | None
    address: _Address


def test_anthropic_structured_outputs(anthropic_sim: AnthropicSimulator) -> None:
    """The SDK's own ``output_format`` schema (its transform: closed objects, bounds moved to
    descriptions) is accepted, and its parser reads the JSON answer; an object left open is a
    400, as the API says."""
    user = [{"role": "user", "content": "a person"}]
    with _anthropic(anthropic_sim) as client:
        with client.messages.stream(model="claude-sim-1", max_tokens=100, messages=user, output_format=_Person) as s:
            final = s.get_final_message()
        assert isinstance(final.parsed_output, _Person) and final.parsed_output.address.city == "Paris"
        sent = anthropic_sim.state.requests[-1].body["output_config"]["format"]
        assert sent["type"] == "json_schema" and sent["schema"]["additionalProperties"] is False
        open_object = {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}}
        with pytest.raises(anthropic.BadRequestError, match="additionalProperties"):
            client.messages.create(model="claude-sim-1", max_tokens=100, messages=user, output_config=open_object)


def test_anthropic_stream_thinking_tools_and_round_trip(anthropic_sim: AnthropicSimulator) -> None:
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    messages = [{"role": "user", "content": "weather?"}]
    with _anthropic(anthropic_sim) as client:
        with client.messages.stream(
            model="claude-sim-1", max_tokens=4096, thinking=thinking, tools=tools, messages=messages
        ) as stream:
            events = [event.type for event in stream]
            final = stream.get_final_message()
        assert events[0] == "message_start" and events[-1] == "message_stop"
        assert [b.type for b in final.content] == ["thinking", "tool_use"]
        assert final.content[0].signature == script.sign(final.content[0].thinking)
        assert final.content[1].input == {"city": "Paris"} and final.stop_reason == "tool_use"
        details = final.usage.output_tokens_details  # how much of output_tokens was thinking
        assert details is not None and 0 < details.thinking_tokens < final.usage.output_tokens
        # The SDK's own round trip (its blocks sent back) is accepted ...
        tool_use = final.content[1]
        follow = [
            *messages,
            {"role": "assistant", "content": final.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
        ]
        reply = client.messages.create(
            model="claude-sim-1", max_tokens=4096, thinking=thinking, tools=tools, messages=follow
        )
        assert "sunny" in reply.content[-1].text
        # ... and without the thinking block it is refused, as the API does.
        follow[1] = {"role": "assistant", "content": [final.content[1]]}
        with pytest.raises(anthropic.BadRequestError, match="thinking"):
            client.messages.create(
                model="claude-sim-1", max_tokens=4096, thinking=thinking, tools=tools, messages=follow
            )


def test_anthropic_errors(anthropic_sim: AnthropicSimulator) -> None:
    with _anthropic(anthropic_sim, "sk-ratelimited") as client, pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with _anthropic(anthropic_sim) as client:
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            client.messages.create(
                model="claude-x-status-529", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
        assert overloaded.value.status_code == 529
        with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
            client.messages.create(model="claude-x", max_tokens=0, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(anthropic.APIError, match="Overloaded"):
            with client.messages.stream(
                model="claude-x-midstream-error", max_tokens=10, messages=[{"role": "user", "content": "x y z"}]
            ) as stream:
                for _ in stream:
                    pass


@pytest.fixture()
def genai_client(gemini_sim: GeminiSimulator) -> Iterator[Callable[..., genai.Client]]:
    """Clients of the simulator by key, each closed after the test (they hold connections)."""
    made: list[genai.Client] = []

    def make(key: str = "sk-sim") -> genai.Client:
        options = types.HttpOptions(base_url=gemini_sim.base_url, api_version="v1beta")
        made.append(genai.Client(api_key=key, http_options=options))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_gemini_text_stream_and_usage(gemini_sim: GeminiSimulator, genai_client: Callable[..., genai.Client]) -> None:
    client = genai_client()
    reply = client.models.generate_content(model="gemini-2.5-flash", contents="hello there")
    assert reply.text == "Reply 0 to: hello there"
    assert reply.usage_metadata is not None and reply.usage_metadata.cached_content_token_count == 5
    assert reply.candidates and reply.candidates[0].finish_reason == types.FinishReason.STOP
    assert gemini_sim.state.requests[-1].headers["x-goog-api-key"] == "sk-sim"
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hello there"))
    assert "".join(c.text or "" for c in chunks) == "Reply 0 to: hello there"
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_gemini_function_call_signature_round_trip(
    gemini_sim: GeminiSimulator, genai_client: Callable[..., genai.Client]
) -> None:
    client = genai_client()
    config = types.GenerateContentConfig(
        tools=[
            types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", parameters=WEATHER_SCHEMA)])
        ],
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024),
    )
    user = types.Content(role="user", parts=[types.Part(text="weather?")])
    first = client.models.generate_content(model="gemini-2.5-flash", contents=[user], config=config)
    assert first.function_calls and first.function_calls[0].name == "get_weather"
    assert first.function_calls[0].args == {"city": "Paris"}
    assert first.candidates and first.candidates[0].content
    model_turn = first.candidates[0].content
    assert any(p.thought for p in model_turn.parts or []), "thought parts come back with includeThoughts"
    result = types.Content(
        role="user", parts=[types.Part.from_function_response(name="get_weather", response={"sky": "sunny"})]
    )
    second = client.models.generate_content(
        model="gemini-2.5-flash", contents=[user, model_turn, result], config=config
    )
    assert "sunny" in (second.text or "")
    # The same turn without its signature is refused, as Gemini 3 does.
    unsigned = types.Content(role="model", parts=[types.Part(function_call=first.function_calls[0])])
    with pytest.raises(genai_errors.ClientError, match="thought_signature") as err:
        client.models.generate_content(model="gemini-2.5-flash", contents=[user, unsigned, result], config=config)
    assert err.value.code == 400


def test_gemini_embeddings_and_errors(gemini_sim: GeminiSimulator, genai_client: Callable[..., genai.Client]) -> None:
    client = genai_client()
    one = client.models.embed_content(model="gemini-embedding-001", contents="a")
    many = client.models.embed_content(
        model="gemini-embedding-001", contents=["a", "b"], config=types.EmbedContentConfig(output_dimensionality=16)
    )
    assert one.embeddings and len(one.embeddings[0].values or []) == 768
    assert many.embeddings and [len(e.values or []) for e in many.embeddings] == [16, 16]
    bad_client, limited_client = genai_client("sk-invalid"), genai_client("sk-ratelimited")
    with pytest.raises(genai_errors.ClientError) as bad_key:
        bad_client.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert bad_key.value.code == 400 and "API key not valid" in str(bad_key.value)
    with pytest.raises(genai_errors.ClientError) as limited:
        limited_client.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert limited.value.code == 429
    with pytest.raises(genai_errors.ServerError) as unavailable:
        client.models.generate_content(model="gemini-x-status-503", contents="x")
    assert unavailable.value.code == 503


def test_vertex_ai_with_a_service_account(gemini_sim: GeminiSimulator) -> None:
    """The google-genai SDK in Vertex mode: google-auth signs the service account's JWT and the
    simulator's token endpoint trades it for the access token the Vertex paths take."""
    from google.oauth2 import service_account

    info = gemini_sim.service_account("proj-sim")
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    client = genai.Client(
        vertexai=True,
        project="proj-sim",
        location="global",
        credentials=credentials,
        http_options=types.HttpOptions(base_url=gemini_sim.origin),
    )
    reply = client.models.generate_content(model="gemini-2.5-flash", contents="hello there")
    assert reply.text == "Reply 0 to: hello there"
    sent = gemini_sim.state.requests[-1]
    assert "/projects/proj-sim/locations/global/publishers/google/models/gemini-2.5-flash:generateContent" in sent.path
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hello there"))
    assert "".join(c.text or "" for c in chunks) == "Reply 0 to: hello there"
    # Another project's resources, or an unknown signer, are refused.
    other = genai.Client(
        vertexai=True,
        project="someone-else",
        location="global",
        credentials=credentials,
        http_options=types.HttpOptions(base_url=gemini_sim.origin),
    )
    with pytest.raises(genai_errors.ClientError) as err:
        other.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert err.value.code == 403
    forged = {**info, "client_email": "nobody@proj-sim.iam.gserviceaccount.com"}
    stranger = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        forged, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    with pytest.raises(Exception, match="invalid_grant"):
        genai.Client(
            vertexai=True,
            project="proj-sim",
            location="global",
            credentials=stranger,
            http_options=types.HttpOptions(base_url=gemini_sim.origin),
        ).models.generate_content(model="gemini-2.5-flash", contents="x")


@pytest.fixture(scope="module")
def bedrock_sim() -> Iterator[BedrockSimulator]:
    sim = BedrockSimulator()
    sim.start()
    yield sim
    sim.stop()


def _bedrock(sim: BedrockSimulator, **credentials: str) -> Any:
    import boto3
    from botocore.config import Config

    credentials = credentials or {
        "aws_access_key_id": bedrock_sim_module.ACCESS_KEY,
        "aws_secret_access_key": bedrock_sim_module.SECRET_KEY,
    }
    return boto3.client(
        "bedrock-runtime",
        region_name=bedrock_sim_module.REGION,
        endpoint_url=sim.origin,
        config=Config(retries={"max_attempts": 1}),
        **credentials,
    )


def test_bedrock_converse_tools_and_stream_with_boto3(bedrock_sim: BedrockSimulator) -> None:
    """boto3 signs with SigV4 (the simulator recomputes the signature) and reads the
    simulator's replies and event-stream frames (their CRCs included)."""
    client = _bedrock(bedrock_sim)
    model = "amazon.nova-pro-v1:0"
    reply = client.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "hello there"}]}])
    assert reply["output"]["message"]["content"][0]["text"] == "Reply 0 to: hello there"
    assert reply["stopReason"] == "end_turn" and reply["usage"]["inputTokens"] > 0
    assert bedrock_sim.signed[-1] == bedrock_sim_module.ACCESS_KEY
    assert "/model/amazon.nova-pro-v1%3A0/converse" in bedrock_sim.state.requests[-1].path

    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER_SCHEMA}}}]}
    question = {"role": "user", "content": [{"text": "weather?"}]}
    first = client.converse(modelId=model, messages=[question], toolConfig=tools)
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][-1]["toolUse"]
    assert use["name"] == "get_weather" and use["input"] == {"city": "Paris"}
    result = {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "sunny"}]}}],
    }
    second = client.converse(modelId=model, messages=[question, first["output"]["message"], result], toolConfig=tools)
    assert "sunny" in second["output"]["message"]["content"][0]["text"]

    streamed = client.converse_stream(modelId=model, messages=[question], toolConfig=tools)
    events = list(streamed["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    partial = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    )
    assert json.loads(partial) == {"city": "Paris"}

    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    thought = client.converse_stream(
        modelId="anthropic.claude-sonnet-4-5-20250929-v1:0", messages=[question], additionalModelRequestFields=thinking
    )
    signatures = [
        e["contentBlockDelta"]["delta"]["reasoningContent"]["signature"]
        for e in thought["stream"]
        if "signature" in e.get("contentBlockDelta", {}).get("delta", {}).get("reasoningContent", {})
    ]
    assert signatures and script.signature_ok("Thinking about: weather?", signatures[0])


def test_bedrock_authentication_and_errors_with_boto3(bedrock_sim: BedrockSimulator) -> None:
    from botocore.exceptions import ClientError

    message = [{"role": "user", "content": [{"text": "x"}]}]
    wrong = _bedrock(
        bedrock_sim, aws_access_key_id=bedrock_sim_module.ACCESS_KEY, aws_secret_access_key="not-the-secret"
    )
    with pytest.raises(ClientError) as err:
        wrong.converse(modelId="amazon.nova-pro-v1:0", messages=message)
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    unknown = _bedrock(bedrock_sim, aws_access_key_id="AKIAUNKNOWN000000000", aws_secret_access_key="x")
    with pytest.raises(ClientError) as err:
        unknown.converse(modelId="amazon.nova-pro-v1:0", messages=message)
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as err:
        _bedrock(bedrock_sim).converse(modelId="amazon.nova-pro-v1:0-status-429", messages=message)
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(ClientError, match="alternate"):
        _bedrock(bedrock_sim).converse(modelId="amazon.nova-pro-v1:0", messages=[*message, *message])


@pytest.fixture(scope="module")
def cohere_sim() -> Iterator[CohereSimulator]:
    simulator = CohereSimulator()
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture()
def cohere_client(cohere_sim: CohereSimulator) -> Iterator[Callable[..., cohere.ClientV2]]:
    """The SDK on an HTTP client the test closes (the SDK's own is never closed)."""
    transports: list[httpx.Client] = []

    def make(key: str = "sk-sim") -> cohere.ClientV2:
        transports.append(httpx.Client(timeout=10))
        return cohere.ClientV2(api_key=key, base_url=cohere_sim.origin, max_retries=0, httpx_client=transports[-1])

    yield make
    for transport in transports:
        transport.close()


def test_cohere_chat_tools_thinking_and_stream_with_the_sdk(
    cohere_sim: CohereSimulator, cohere_client: Callable[..., cohere.ClientV2]
) -> None:
    """The cohere SDK's models are lenient (fields it does not find are None), so the test reads
    every field the gateway relies on through the SDK's typed objects."""
    client = cohere_client()
    model = "command-a-03-2025"
    reply = client.chat(model=model, messages=[{"role": "user", "content": "hello there"}])
    assert reply.message.content is not None and reply.message.content[0].text == "Reply 0 to: hello there"
    assert reply.finish_reason == "COMPLETE"
    assert reply.usage is not None and reply.usage.tokens is not None and reply.usage.tokens.input_tokens
    assert cohere_sim.state.requests[-1].headers["Authorization"] == "Bearer sk-sim"

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    question = {"role": "user", "content": "weather?"}
    first = client.chat(model=model, messages=[question], tools=tools)  # type: ignore[arg-type,list-item]
    assert first.finish_reason == "TOOL_CALL" and first.message.tool_plan
    calls = first.message.tool_calls or []
    assert calls and calls[0].function is not None and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}
    answer = {"role": "tool", "tool_call_id": calls[0].id, "content": [{"type": "text", "text": "sunny"}]}
    second = client.chat(model=model, messages=[question, first.message, answer], tools=tools)  # type: ignore[arg-type,list-item]
    assert second.message.content is not None and "sunny" in (second.message.content[0].text or "")

    events = list(
        client.chat_stream(
            model="command-a-reasoning-08-2025",
            messages=[question],  # type: ignore[list-item]
            tools=tools,  # type: ignore[list-item]
            thinking={"type": "enabled", "token_budget": 1024},
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message-start" and kinds[-1] == "message-end", kinds
    thinking = "".join(
        e.delta.message.content.thinking or ""  # type: ignore[union-attr]
        for e in events
        if e.type == "content-delta"
    )
    assert thinking == "Thinking about: weather?"
    plan = "".join(e.delta.message.tool_plan or "" for e in events if e.type == "tool-plan-delta")  # type: ignore[union-attr]
    assert plan == "I will call get_weather."
    start = next(e for e in events if e.type == "tool-call-start")
    assert start.delta.message.tool_calls.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = "".join(
        e.delta.message.tool_calls.function.arguments or ""  # type: ignore[union-attr]
        for e in events
        if e.type == "tool-call-delta"
    )
    assert json.loads(arguments) == {"city": "Paris"}
    end = events[-1]
    assert end.delta.finish_reason == "TOOL_CALL" and end.delta.usage.tokens.output_tokens  # type: ignore[union-attr]


def test_cohere_errors_and_validation_with_the_sdk(cohere_client: Callable[..., cohere.ClientV2]) -> None:
    message = [{"role": "user", "content": "x"}]
    with pytest.raises(cohere.UnauthorizedError):
        cohere_client("sk-invalid").chat(model="command-a-03-2025", messages=message)  # type: ignore[arg-type]
    with pytest.raises(cohere.TooManyRequestsError):
        cohere_client().chat(model="command-a-03-2025-status-429", messages=message)  # type: ignore[arg-type]
    with pytest.raises(cohere.BadRequestError, match="tool_call_id"):
        orphan = {"role": "tool", "tool_call_id": "nope", "content": "sunny"}
        cohere_client().chat(model="command-a-03-2025", messages=[*message, orphan])  # type: ignore[list-item]
    listing = cohere_client().models.list()
    assert listing.models and listing.models[0].name == "command-a-03-2025"
