"""The Responses API (``/v1/responses``), driven by the official ``openai`` SDK and the
``openai-agents`` SDK against two edge processes, with OpenAI, Anthropic and Gemini
simulators upstream: text, tools with ``previous_response_id`` across edges, streamed typed
events, structured output, reasoning with Anthropic's signatures handed back, the store
(get, delete, input items, owners), errors in OpenAI's shape, and metering."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.conftest import Gateway, Simulators, files_containing, own_gateway, wait_until

MODELS = ["gpt-4.1", "claude-sonnet-4-6", "gemini-2.5-flash"]
WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, sims: Simulators) -> Iterator[Gateway]:
    """A stack of this module's own (it adds and stops an edge, and makes keys)."""
    yield from own_gateway(tmp_path_factory.mktemp("responses"), sims)


@pytest.fixture(scope="module")
def edges(gateway: Gateway) -> Iterator[list[str]]:
    """The gateway's edge and a second one (stopped at the end)."""
    second = gateway.stack.add_edge("edge-responses")

    def heard() -> bool:
        resp = gateway.admin("PUT", "/ai/users/responses-probe", json={"rpm": 1000})
        return resp.headers.get("x-switchyard-sync") == "confirmed 2/2"

    wait_until(heard, what="the router to hear both edges")
    yield [gateway.origin, second]
    gateway.stack.supervisor.stop("edge-responses")


_CLIENTS: dict[tuple[str, str], OpenAI] = {}


def client(origin: str, key: str) -> OpenAI:
    if (origin, key) not in _CLIENTS:
        _CLIENTS[origin, key] = OpenAI(base_url=origin + "/v1", api_key=key, max_retries=0)
    return _CLIENTS[origin, key]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.popitem()[1].close()


def new_user(gateway: Gateway) -> tuple[str, str]:
    user = "resp-" + secrets.token_hex(4)
    return user, gateway.new_user_key(user)


@pytest.mark.parametrize("model", MODELS)
def test_text_with_instructions_is_answered_and_metered(gateway: Gateway, edges: list[str], model: str) -> None:
    user, key = new_user(gateway)
    resp = client(edges[0], key).responses.create(model=model, instructions="Be brief.", input="hello there")
    assert resp.status == "completed" and resp.object == "response"
    assert resp.id.startswith("resp_")
    assert resp.output_text.startswith("Reply 0 to: hello there")
    assert "[system: Be brief.]" in resp.output_text  # the instructions reached the provider as its system prompt
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    wait_until(lambda: gateway.requests_metered(user) == 1, what="the response to be metered")
    usage = gateway.usage(user)
    assert usage["prompt_tokens"] == resp.usage.input_tokens
    assert usage["completion_tokens"] == resp.usage.output_tokens
    log = gateway.admin("GET", "/ai/usage/requests", params={"user": user}).json()["data"]
    assert [row["endpoint"] for row in log] == ["responses"]


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_round_trip_continues_on_the_other_edge(gateway: Gateway, edges: list[str], model: str) -> None:
    _, key = new_user(gateway)
    first = client(edges[0], key).responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"} or "city" in json.loads(calls[0].arguments)
    assert calls[0].id.startswith("fc_") and calls[0].call_id

    # The next turn names only the tool's output: the rest comes from the store, on the other edge.
    second = client(edges[1], key).responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    assert second.status == "completed" and second.previous_response_id == first.id
    assert "sunny" in second.output_text
    sent = _last_upstream(gateway, model)
    if model.startswith("gpt"):  # passed through: OpenAI keeps the conversation and continues it
        assert sent["previous_response_id"] == first.id and "Weather in Paris?" not in json.dumps(sent)
    else:  # translated: the gateway's store gave the first turn's input and output
        assert "Weather in Paris?" in json.dumps(sent)
    assert "sunny" in json.dumps(sent)


def _last_upstream(gateway: Gateway, model: str) -> dict[str, Any]:
    sim = {"gpt": gateway.sim, "claude": gateway.anthropic, "gemini": gateway.gemini}[model.split("-")[0]]
    body: dict[str, Any] = sim.state.requests[-1].body
    return body


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_is_the_typed_event_sequence_the_sdk_accumulates(
    gateway: Gateway, edges: list[str], model: str
) -> None:
    _, key = new_user(gateway)
    with client(edges[1], key).responses.stream(model=model, input="count with me") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    text_deltas = kinds.count("response.output_text.delta")
    assert text_deltas >= 2  # word by word, as the provider streamed it
    assert kinds.index("response.output_item.added") < kinds.index("response.content_part.added")
    assert kinds.index("response.content_part.added") < kinds.index("response.output_text.delta")
    assert kinds.index("response.output_text.done") < kinds.index("response.output_item.done")
    assert final.output_text.startswith("Reply 0 to: count with me")
    assert final.usage is not None and final.usage.output_tokens > 0

    # Tools stream their arguments; the stored response answers a GET on the other edge.
    with client(edges[1], key).responses.stream(model=model, input="Weather?", tools=[WEATHER]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = next(item for item in final.output if item.type == "function_call")
    assert "city" in json.loads(call.arguments)
    again = client(edges[0], key).responses.retrieve(final.id)
    assert again.output[-1].type == "function_call" and again.output[-1].arguments == call.arguments


class Forecast(BaseModel):
    city: str
    celsius: int


@pytest.mark.parametrize("model", MODELS)
def test_structured_output_parses_into_the_schema(gateway: Gateway, edges: list[str], model: str) -> None:
    _, key = new_user(gateway)
    parsed = client(edges[0], key).responses.parse(model=model, input="Forecast for Oslo", text_format=Forecast)
    assert isinstance(parsed.output_parsed, Forecast)
    sent = _last_upstream(gateway, model)
    assert "celsius" in json.dumps(sent)  # the schema went to the provider in its own form


def test_reasoning_is_handed_back_with_anthropics_signature(gateway: Gateway, edges: list[str]) -> None:
    """Thinking with a tool call: the next turn must give the signed thinking back (Anthropic
    refuses it otherwise); from the store, across edges, and from a client that passes the
    items itself (include=reasoning.encrypted_content, store=false)."""
    _, key = new_user(gateway)
    model = "claude-sonnet-4-6"
    options: dict[str, Any] = {"reasoning": {"effort": "low", "summary": "auto"}, "max_output_tokens": 4096}
    first = client(edges[0], key).responses.create(model=model, input="Weather in Paris?", tools=[WEATHER], **options)
    kinds = [item.type for item in first.output]
    assert kinds == ["reasoning", "function_call"]
    reasoning = first.output[0]
    assert reasoning.summary and reasoning.summary[0].text.startswith("Thinking about")
    assert reasoning.encrypted_content is None  # only when asked to include it
    call = first.output[1]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    second = client(edges[1], key).responses.create(
        model=model, previous_response_id=first.id, input=[result], tools=[WEATHER], **options
    )
    assert "sunny" in second.output_text
    sent = gateway.anthropic.state.requests[-1].body
    thinking = [b for m in sent["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "thinking"]
    assert len(thinking) == 1 and thinking[0]["signature"]

    # Stateless: the client keeps the items, the reasoning's encrypted content carries the signature.
    c = client(edges[1], key)
    turn = c.responses.create(
        model=model,
        input="Weather in Paris?",
        tools=[WEATHER],
        store=False,
        include=["reasoning.encrypted_content"],
        **options,
    )
    assert turn.output[0].type == "reasoning" and turn.output[0].encrypted_content
    items = [item.model_dump(exclude_none=True) for item in turn.output]
    follow = c.responses.create(
        model=model,
        input=[{"role": "user", "content": "Weather in Paris?"}, *items, {**result, "call_id": turn.output[1].call_id}],
        tools=[WEATHER],
        store=False,
        **options,
    )
    assert "sunny" in follow.output_text
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(turn.id)  # store=false keeps nothing


def test_the_store_get_delete_and_input_items_for_their_owner_only(gateway: Gateway, edges: list[str]) -> None:
    _, key = new_user(gateway)
    _, other = new_user(gateway)
    a, b = client(edges[0], key), client(edges[1], key)
    first = a.responses.create(model="gemini-2.5-flash", input="one")
    second = b.responses.create(model="gemini-2.5-flash", input="two", previous_response_id=first.id)
    assert "two" in second.output_text

    got = b.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text
    items = list(a.responses.input_items.list(second.id, order="asc"))
    texts = [getattr(item, "content", [None])[0] for item in items]
    assert [item.type for item in items] == ["message", "message", "message"]
    assert [t.text for t in texts if t is not None][:1] == ["one"]  # the first turn's input, its answer, then "two"
    assert items[1].role == "assistant" and items[2].role == "user"
    newest = a.responses.input_items.list(second.id, limit=1)
    assert newest.data[0].id == items[-1].id and newest.has_more

    stranger = client(edges[0], other)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(second.id)
    with pytest.raises(openai.BadRequestError, match="not found"):
        stranger.responses.create(model="gemini-2.5-flash", input="x", previous_response_id=second.id)

    deleted = a.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(first.id)  # gone on the other edge too
    with pytest.raises(openai.BadRequestError, match="deleted or has expired"):
        b.responses.create(model="gemini-2.5-flash", input="three", previous_response_id=second.id)


def test_bad_requests_get_openai_errors_before_any_upstream_call(gateway: Gateway, edges: list[str]) -> None:
    _, key = new_user(gateway)
    calls = len(gateway.anthropic.state.requests)
    url = edges[0] + "/v1/responses"
    headers = {"authorization": f"Bearer {key}"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "claude-sonnet-4-6", "input": [{"type": "computer_call", "id": "x"}]}, "input[0].type"),
        ({"model": "claude-sonnet-4-6", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "claude-sonnet-4-6", "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"model": "claude-sonnet-4-6", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "claude-sonnet-4-6", "input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
        ({"input": "x"}, "model"),
    ]
    for body, param in cases:
        resp = httpx.post(url, json=body, headers=headers, timeout=30)
        assert resp.status_code == 400, (body, resp.text)
        error = resp.json()["error"]
        assert error["param"] == param, (body, error)
        assert error["type"] == "invalid_request_error" and error["message"]
    assert len(gateway.anthropic.state.requests) == calls
    missing = httpx.get(edges[0] + "/v1/responses/resp_nope", headers=headers, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    unauthenticated = httpx.post(url, json={"model": "gpt-4o-mini", "input": "x"}, timeout=30)
    assert unauthenticated.status_code == 401


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-2.5-flash"])
def test_the_agents_sdk_runs_a_function_tool(gateway: Gateway, edges: list[str], model: str) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # the SDK would export traces to OpenAI
    _, key = new_user(gateway)
    ran: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"sunny in {city}"

    async def run() -> Any:
        async with AsyncOpenAI(base_url=edges[1] + "/v1", api_key=key, max_retries=0) as async_client:
            agent = Agent(
                name="forecaster",
                instructions="Answer with the weather.",
                tools=[get_weather],
                model=OpenAIResponsesModel(model=model, openai_client=async_client),
            )
            return await Runner.run(agent, "What is the weather in Paris?")

    result = asyncio.run(run())
    assert ran == ["Paris"]  # the model's call ran the tool, whose result went back to the model
    assert "sunny in Paris" in str(result.final_output)


@pytest.mark.parametrize("model", ["gpt-sim-midstream-error", "mistral-sim-midstream-error"])
def test_a_failed_stream_ends_with_response_failed_and_is_metered_as_failed(
    gateway: Gateway, edges: list[str], model: str
) -> None:
    """OpenAI's own response.failed, relayed; a translated provider's error, as response.failed."""
    user, key = new_user(gateway)
    with client(edges[0], key).responses.stream(model=model, input="go") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds.count("response.output_text.delta") >= 1
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None and "simulated overload" in failed.error.message
    if model.startswith("mistral"):  # translated: what had arrived is in the failed response
        assert failed.output and failed.output[0].type == "message"
    # Nothing was stored for a later turn.
    with pytest.raises(openai.NotFoundError):
        client(edges[1], key).responses.retrieve(failed.id)
    wait_until(lambda: gateway.requests_metered(user) == 1, what="the failed stream to be metered")
    row = gateway.admin("GET", "/ai/usage/requests", params={"user": user}).json()["data"][0]
    assert row["status"] == 502 and row["stream"] is True and row["endpoint"] == "responses"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["gpt-4.1", "mistral-large-latest"])
def test_max_output_tokens_makes_an_incomplete_response(
    gateway: Gateway, edges: list[str], stream: bool, model: str
) -> None:
    _, key = new_user(gateway)
    c = client(edges[1], key)
    if stream:
        with c.responses.stream(model=model, input="one two three four", max_output_tokens=2) as s:
            events = list(s)
        assert events[-1].type == "response.incomplete"
        resp = c.responses.retrieve(events[-1].response.id)  # type: ignore[union-attr]  # stored as it ended
    else:
        resp = c.responses.create(model=model, input="one two three four", max_output_tokens=2)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "Reply 0"
    sent = next(r for r in reversed(gateway.sim.state.requests) if r.path.endswith(("/responses", "/completions")))
    # OpenAI's Responses API takes the limit as it came; a chat-only provider as chat's.
    assert sent.body["max_output_tokens" if model.startswith("gpt") else "max_completion_tokens"] == 2


def test_openai_models_pass_through_and_openai_keeps_the_conversation(gateway: Gateway, edges: list[str]) -> None:
    user, key = new_user(gateway)
    _, other = new_user(gateway)
    a, b = client(edges[0], key), client(edges[1], key)
    first = a.responses.create(
        model="gpt-4.1", input="Weather in Paris?", tools=[WEATHER], extra_body={"service_tier": "flex"}
    )
    sent = gateway.sim.state.requests[-1]
    assert sent.path == "/v1/responses" and sent.body["service_tier"] == "flex"  # as the client sent it
    auth = {k.lower(): v for k, v in sent.headers.items()}["authorization"]
    assert auth.startswith("Bearer ") and auth != f"Bearer {key}"  # the provider's key, never the client's
    call = next(item for item in first.output if item.type == "function_call")
    assert first.id in gateway.sim.responses.stored  # OpenAI keeps it

    # Read, continued and listed from the other edge: each goes to OpenAI, found by where it is kept.
    assert b.responses.retrieve(first.id).output[-1].type == "function_call"
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    second = b.responses.create(model="gpt-4.1", previous_response_id=first.id, input=[result], tools=[WEATHER])
    assert "sunny" in second.output_text
    listed = list(a.responses.input_items.list(second.id, order="asc"))
    assert [item.type for item in listed] == ["message", "function_call", "function_call_output"]
    wait_until(lambda: gateway.requests_metered(user) == 2, what="both turns to be metered")
    usage = gateway.usage(user)
    assert first.usage is not None and second.usage is not None
    assert usage["prompt_tokens"] == first.usage.input_tokens + second.usage.input_tokens
    assert usage["completion_tokens"] == first.usage.output_tokens + second.usage.output_tokens

    # Another user's key finds nothing, here or at OpenAI (whose org would have let it read).
    sent_before = len(gateway.sim.state.requests)
    with pytest.raises(openai.NotFoundError):
        client(edges[0], other).responses.retrieve(second.id)
    with pytest.raises(openai.BadRequestError, match="not found"):
        client(edges[0], other).responses.create(model="gpt-4.1", input="x", previous_response_id=second.id)
    assert len(gateway.sim.state.requests) == sent_before

    # A response OpenAI keeps is continued only where it is kept.
    with pytest.raises(openai.BadRequestError, match="OpenAI keeps"):
        b.responses.create(model="claude-sonnet-4-6", previous_response_id=second.id, input="and now?")
    # A conversation the gateway keeps goes on with an OpenAI model through translation.
    gemini = a.responses.create(model="gemini-2.5-flash", input="one")
    onward = b.responses.create(model="gpt-4.1", previous_response_id=gemini.id, input="two")
    assert "two" in onward.output_text
    assert gateway.sim.state.requests[-1].path == "/v1/chat/completions"

    a.responses.delete(second.id)
    assert second.id not in gateway.sim.responses.stored
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(second.id)


def test_a_passed_through_stream_is_relayed_as_openai_sent_it(gateway: Gateway, edges: list[str]) -> None:
    _, key = new_user(gateway)
    url = edges[1] + "/v1/responses"
    body = {"model": "gpt-4.1", "input": "count with me", "stream": True}
    with httpx.stream("POST", url, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30) as resp:
        raw = b"".join(resp.iter_bytes())
    events = [block for block in raw.split(b"\n\n") if block]
    kinds = [block.split(b"\n")[0].removeprefix(b"event: ").decode() for block in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    numbers = [json.loads(block.split(b"\n", 1)[1].removeprefix(b"data: "))["sequence_number"] for block in events]
    assert numbers == list(range(len(events)))  # OpenAI's own numbering, nothing added or dropped
    assert b"x_switchyard" not in raw and b"[DONE]" not in raw


def test_the_api_is_served_under_ai_v1_too(gateway: Gateway, edges: list[str]) -> None:
    """``/ai/v1`` is the same API as ``/v1`` (for deployments that route ``/v1`` elsewhere):
    a response made there is read back under ``/v1`` on the other edge."""
    _, key = new_user(gateway)
    made = client(edges[0] + "/ai", key).responses.create(model="claude-sonnet-4-6", input="hello there")
    assert made.output_text.startswith("Reply 0 to: hello there")
    again = client(edges[1], key).responses.retrieve(made.id)
    assert again.id == made.id and again.output_text == made.output_text


def test_stored_turns_are_ciphertext_on_the_bus_and_on_disk(gateway: Gateway, edges: list[str]) -> None:
    """What the bucket keeps (the turn's input and the answer) is sealed with the responses key
    keyvault delivers to registered edges: the NATS store's files never hold it in plaintext,
    and the other edge reads the turn back."""
    _, key = new_user(gateway)
    canary = "canary-" + secrets.token_hex(8)
    first = client(edges[0], key).responses.create(model="gemini-2.5-flash", input=f"remember {canary}")
    assert canary in first.output_text
    again = client(edges[1], key).responses.retrieve(first.id)
    assert canary in again.output_text
    items = list(client(edges[1], key).responses.input_items.list(first.id))
    assert canary in json.dumps([item.model_dump() for item in items])
    assert not files_containing(gateway.info.data_dir / "nats", canary.encode())


@pytest.mark.parametrize("model", ["gpt-4.1", "claude-sonnet-4-6"])
def test_background_responses_are_refused_and_output_limits_are_reserved(
    gateway: Gateway, edges: list[str], model: str
) -> None:
    """A background response is answered ``queued`` with no usage and costs only when it
    finishes: passed through, it was metered at 0 tokens with its budget released (three
    such calls on a $0.01 budget spent 450k tokens and showed $0.00). It is refused, passed
    through or translated. ``max_output_tokens`` is reserved in full on both paths."""
    user = "resp-bg-" + secrets.token_hex(4)
    created = gateway.admin("POST", "/ai/keys", json={"user": user, "tpm": 2000})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    wait_until(lambda: gateway.admin("GET", "/v1/models", key=key).status_code == 200, what="the key")
    openai_calls, anthropic_calls = len(gateway.sim.state.requests), len(gateway.anthropic.state.requests)
    sdk = client(edges[0], key)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model=model, input="write a novel", background=True)
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == "background" and error["code"] == "unsupported_parameter"
    with pytest.raises(openai.RateLimitError) as too_much:
        client(edges[1], key).responses.create(model=model, input="x", max_output_tokens=5000)
    assert "lower max_tokens" in str(too_much.value)
    with pytest.raises(openai.BadRequestError) as not_integer:
        sdk.responses.create(model=model, input="x", extra_body={"max_output_tokens": 12.5})
    assert isinstance(not_integer.value.body, dict) and not_integer.value.body["param"] == "max_output_tokens"
    assert (len(gateway.sim.state.requests), len(gateway.anthropic.state.requests)) == (openai_calls, anthropic_calls)
    assert sdk.responses.create(model=model, input="x", max_output_tokens=500).status == "completed"
