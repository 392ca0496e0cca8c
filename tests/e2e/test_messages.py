"""Anthropic's Messages API inbound (``/v1/messages``), driven by the official ``anthropic`` SDK
against two edge processes: for Anthropic's models passed through as sent, streamed event by
event, tools and thinking with signatures intact, counted tokens, errors in Anthropic's shape,
and metered like chat; for OpenAI's and Gemini's models translated, with ``stop_reason:
"tool_use"`` for every tool call, Anthropic's stream events, and Gemini's thought signatures
carried across turns."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.conftest import Gateway, Simulators, own_gateway, wait_until

MODEL = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, sims: Simulators) -> Iterator[Gateway]:
    """A stack of this module's own (it adds and stops an edge, and makes keys and users)."""
    yield from own_gateway(tmp_path_factory.mktemp("messages"), sims)


@pytest.fixture(scope="module")
def edges(gateway: Gateway) -> Iterator[list[str]]:
    """The gateway's edge and a second one, stopped at the end (other modules count edges)."""
    second = gateway.stack.add_edge("edge-messages")

    def heard() -> bool:  # a key made now is then known to both edges when the call returns
        resp = gateway.admin("PUT", "/ai/users/messages-probe", json={"rpm": 1000})
        return resp.headers.get("x-switchyard-sync") == "confirmed 2/2"

    wait_until(heard, what="the router to hear both edges")
    yield [gateway.origin, second]
    gateway.stack.supervisor.stop("edge-messages")


@pytest.fixture(scope="module")
def user_key(gateway: Gateway) -> Iterator[tuple[str, str]]:
    user = "msg-" + secrets.token_hex(4)
    yield user, gateway.new_user_key(user)


_CLIENTS: dict[tuple[str, str], anthropic.Anthropic] = {}


def _client(origin: str, key: str) -> anthropic.Anthropic:
    """One SDK client per edge and key for the module (closed at its end)."""
    if (origin, key) not in _CLIENTS:
        _CLIENTS[origin, key] = anthropic.Anthropic(base_url=origin, api_key=key, max_retries=0)
    return _CLIENTS[origin, key]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.popitem()[1].close()


def test_a_message_and_a_tool_round_trip_on_either_edge(
    gateway: Gateway, edges: list[str], user_key: tuple[str, str]
) -> None:
    user, key = user_key
    first = _client(edges[0], key).messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    sent = gateway.anthropic.state.requests[-1]
    assert sent.body["tools"] == [WEATHER] and sent.headers["anthropic-version"]  # the SDK's own
    assert sent.headers["x-api-key"] != key  # the provider's key, never the client's

    # The second turn, on the other edge, with the tool's result.
    second = _client(edges[1], key).messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "sunny" in second.content[0].text
    wait_until(lambda: gateway.requests_metered(user) == 2, what="both turns to be metered")
    usage = gateway.usage(user)
    # Prompt tokens are all input: fresh, read from the cache and written to it.
    assert usage["prompt_tokens"] == sum(
        u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
        for u in (first.usage, second.usage)
    )
    assert usage["cached_tokens"] == sum(u.cache_read_input_tokens or 0 for u in (first.usage, second.usage))
    assert usage["completion_tokens"] == first.usage.output_tokens + second.usage.output_tokens


def test_a_stream_arrives_event_by_event_with_the_thinking_signature_intact(
    gateway: Gateway, edges: list[str], user_key: tuple[str, str]
) -> None:
    user, key = user_key
    before = gateway.requests_metered(user)
    with _client(edges[1], key).messages.stream(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "count the stars"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    thinking = next(block for block in final.content if block.type == "thinking")
    assert thinking.thinking.startswith("Thinking about") and thinking.signature
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0

    # The signature goes back on the next turn as it came, and Anthropic accepts it.
    again = _client(edges[0], key).messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[
            {"role": "user", "content": "count the stars"},
            {"role": "assistant", "content": [block.model_dump() for block in final.content]},
            {"role": "user", "content": "and again"},
        ],
    )
    assert again.stop_reason == "end_turn"
    resent = gateway.anthropic.state.requests[-1].body["messages"][1]["content"][0]
    assert resent["signature"] == thinking.signature
    wait_until(lambda: gateway.requests_metered(user) == before + 2, what="the stream to be metered")


def test_the_raw_stream_is_anthropics_own(gateway: Gateway, edges: list[str], user_key: tuple[str, str]) -> None:
    _, key = user_key
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi there"}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"}
    with httpx.stream("POST", edges[0] + "/v1/messages", json=body, headers=headers) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        text = resp.read().decode()
    blocks = [b for b in text.split("\n\n") if b.strip()]
    for block in blocks:
        event, data = block.split("\n", 1)
        assert event.startswith("event: ") and data.startswith("data: ")
        assert json.loads(data[6:])["type"] == event[7:]
    assert "[DONE]" not in text and "x_switchyard" not in text
    # The client's version and betas reach Anthropic.
    sent = gateway.anthropic.state.requests[-1].headers
    assert (sent["anthropic-version"], sent["anthropic-beta"]) == ("2023-06-01", "interleaved-thinking-2025-05-14")


def test_count_tokens_and_errors_in_anthropics_shape(
    gateway: Gateway, edges: list[str], user_key: tuple[str, str]
) -> None:
    _, key = user_key
    # Counting is not a request for a model's answer. A user of its own, so that no other
    # test's event is still on its way to the store: one answer after the count, from the same
    # edge (whose events reach metering in order), is then the only request stored.
    counter = "msg-count-" + secrets.token_hex(4)
    counting = _client(edges[1], gateway.new_user_key(counter))
    counted = counting.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "how many tokens"}])
    assert counted.input_tokens > 0
    assert gateway.anthropic.state.requests[-1].path == "/v1/messages/count_tokens"
    counting.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    wait_until(lambda: gateway.requests_metered(counter) >= 1, what="the answer to be metered")
    assert gateway.requests_metered(counter) == 1
    client = _client(edges[1], key)

    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        _client(edges[0], "sk-sy-nope").messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert bad_key.value.body["type"] == "error"
    assert bad_key.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.BadRequestError) as missing:
        client.messages.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=0)
    assert missing.value.body["error"]["type"] == "invalid_request_error"

    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])

    # What only Anthropic runs (a server tool) is refused for another provider's model, saying
    # why, before anything is sent anywhere.
    sent = len(gateway.sim.state.requests)
    with pytest.raises(anthropic.BadRequestError) as elsewhere:
        client.messages.create(
            model="gpt-4.1",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    assert "server tools" in elsewhere.value.body["error"]["message"]
    assert len(gateway.sim.state.requests) == sent

    # The provider's own errors come back in its shape, with its status.
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=MODEL + "-status-429", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    # Bearer keys work too (newer SDKs and curl users send them).
    resp = httpx.post(
        edges[0] + "/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
    )
    assert resp.status_code == 200 and resp.json()["type"] == "message"
    assert resp.headers["x-ratelimit-limit-requests"] == "unlimited"


def test_limits_hold_and_refuse_in_anthropics_shape(gateway: Gateway, edges: list[str]) -> None:
    created = gateway.admin("POST", "/ai/keys", json={"user": "msg-limited-" + secrets.token_hex(3), "tpm": 2000})
    key = created.json()["key"]
    client = _client(edges[0], key)
    ok = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "short"}]
    )
    assert ok.headers["x-ratelimit-limit-tokens"] == "2000"
    # The system prompt counts toward the reservation: this one alone is over the minute's tokens.
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(
            model=MODEL, max_tokens=100, system="x" * 9000, messages=[{"role": "user", "content": "short"}]
        )
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert "lower max_tokens" in refused.value.body["error"]["message"]


# --- translated: models of other providers ------------------------------------------------

TRANSLATED = ["gpt-4.1", "gemini-2.5-flash"]


@pytest.mark.parametrize("model", TRANSLATED)
def test_a_tool_round_trip_on_another_providers_model(
    gateway: Gateway, edges: list[str], user_key: tuple[str, str], model: str
) -> None:
    _, key = user_key
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = _client(edges[0], key).messages.create(
        model=model, max_tokens=200, system="Be brief.", tools=[WEATHER], messages=[question]
    )
    assert first.type == "message" and first.role == "assistant"
    assert first.stop_reason == "tool_use"  # whatever finish reason the provider gave
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    second = _client(edges[1], key).messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "sunny" in second.content[0].text


@pytest.mark.parametrize("model", TRANSLATED)
def test_a_translated_stream_is_anthropics_event_sequence(
    gateway: Gateway, edges: list[str], user_key: tuple[str, str], model: str
) -> None:
    _, key = user_key
    client = _client(edges[1], key)
    with client.messages.stream(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "stream to me"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == 1 and kinds.count("content_block_stop") == 1
    assert final.content[0].type == "text" and "stream to me" in final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0

    with client.messages.stream(
        model=model, max_tokens=200, tools=[WEATHER], messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        final = stream.get_final_message()
    tool = next(block for block in final.content if block.type == "tool_use")
    assert tool.input == {"city": "Paris"} and final.stop_reason == "tool_use"


def test_gemini_thinking_with_a_tool_call_continues(
    gateway: Gateway, edges: list[str], user_key: tuple[str, str]
) -> None:
    """Gemini signs a call made while thinking and refuses the next turn without the
    signature: it rides in the tool_use id, which every client sends back as it came."""
    _, key = user_key
    question = {"role": "user", "content": "Weather in Paris?"}
    options: dict[str, object] = {"thinking": {"type": "enabled", "budget_tokens": 1024}, "tools": [WEATHER]}
    first = _client(edges[0], key).messages.create(
        model="gemini-2.5-flash", max_tokens=2048, messages=[question], **options
    )
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    call = first.content[1]
    second = _client(edges[1], key).messages.create(
        model="gemini-2.5-flash",
        max_tokens=2048,
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ],
        **options,
    )
    assert "sunny" in "".join(block.text for block in second.content if block.type == "text")
    parts = gateway.gemini.state.requests[-1].body["contents"][1]["parts"]
    assert any(part.get("thoughtSignature") for part in parts if "functionCall" in part)


def test_count_tokens_for_another_providers_model_is_an_estimate(
    gateway: Gateway, edges: list[str], user_key: tuple[str, str]
) -> None:
    _, key = user_key
    counted = _client(edges[0], key).messages.with_raw_response.count_tokens(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert counted.headers["x-switchyard-estimated"] == "true"
    assert 100 <= counted.parse().input_tokens <= 110  # four characters a token


def _rpm_key(gateway: Gateway, rpm: int) -> str:
    created = gateway.admin("POST", "/ai/keys", json={"user": "msg-count-rpm-" + secrets.token_hex(3), "rpm": rpm})
    key = str(created.json()["key"])
    wait_until(lambda: gateway.admin("GET", "/v1/models", key=key).status_code == 200, what="the key")
    return key


def test_count_tokens_counts_as_a_request_for_rpm(gateway: Gateway, edges: list[str]) -> None:
    """Each count is an upstream call with the operator's key: it takes one of the key's
    requests per minute (no tokens), on every edge, and the next is a 429 in Anthropic's shape."""
    for _ in range(3):  # one minute's window must hold all four: run again if it crossed one
        key, start = _rpm_key(gateway, 3), time.time()
        counted = [
            _client(edges[i % 2], key).messages.with_raw_response.count_tokens(
                model=MODEL, messages=[{"role": "user", "content": "count me"}]
            )
            for i in range(3)
        ]
        with pytest.raises(anthropic.RateLimitError) as refused:
            _client(edges[1], key).messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x"}])
        if int(start // 60) == int(time.time() // 60):
            break
    assert all(r.headers["x-ratelimit-limit-requests"] == "3" for r in counted)
    assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "rate_limit_error"
