"""Chat completions through the running stack with the official OpenAI SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import PROVIDER_KEY, Gateway
from tests.simulators.openai_sim import CACHED_TOKENS, PROMPT_TOKENS, REPLY

MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_completion_through_openai_provider(gateway: Gateway) -> None:
    before = len(gateway.sim.state.requests)
    resp = gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.2)
    assert resp.choices[0].message.content == REPLY
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    sent = gateway.sim.state.requests[before]
    # The provider key from the environment, imported into Vault, delivered sealed to the edge.
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert sent.body["model"] == "gpt-4o"
    assert sent.body["temperature"] == 0.2
    assert sent.body["messages"] == MESSAGES
    assert sent.headers["x-client-request-id"].startswith("req_")


def test_stream_relays_every_chunk_and_usage_when_asked(gateway: Gateway) -> None:
    stream = gateway.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split() == REPLY.split()
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == PROMPT_TOKENS


def test_stream_hides_usage_chunk_the_client_did_not_ask_for(gateway: Gateway) -> None:
    before = len(gateway.sim.state.requests)
    chunks = list(gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    # Upstream was asked for usage (metering needs it) ...
    assert gateway.sim.state.requests[before].body["stream_options"] == {"include_usage": True}
    # ... but the client sees exactly what OpenAI would have sent it.
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_stream_is_sse_framed_and_ends_with_done(gateway: Gateway) -> None:
    with httpx.stream(
        "POST",
        gateway.info.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gateway.info.admin_key}"},
        json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read()
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    assert events[-2] == b"data: [DONE]"
    for event in events[:-2]:
        assert event.startswith(b"data: ")
        json.loads(event[6:])


def test_echo_provider_round_trip_and_stream(gateway: Gateway) -> None:
    client = gateway.client()
    resp = client.chat.completions.create(model="echo/anything", messages=[{"role": "user", "content": "ping pong"}])
    assert resp.choices[0].message.content == "ping pong"
    assert resp.usage is not None and resp.usage.completion_tokens == 2
    chunks = list(
        client.chat.completions.create(
            model="echo/anything",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 6


def test_provider_pinning_and_alias(gateway: Gateway) -> None:
    before = len(gateway.sim.state.requests)
    gateway.client().chat.completions.create(model="openai/gpt-sim-pinned", messages=MESSAGES)
    gateway.client().chat.completions.create(model="gpt-4o-latest", messages=MESSAGES)
    assert [r.body["model"] for r in gateway.sim.state.requests[before:]] == ["gpt-sim-pinned", "gpt-4o"]


def test_also_served_under_ai_v1(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.origin + "/ai/v1", api_key=gateway.info.admin_key, max_retries=0)
    assert client.chat.completions.create(model="echo/x", messages=MESSAGES).choices[0].message.content == "Say hello"
    assert any(m.id == "gpt-4o" for m in client.models.list())


def test_models_list_and_retrieve(gateway: Gateway) -> None:
    client = gateway.client()
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o", "claude-sonnet-4-6", "gemini-2.5-flash", "grok-4", "deepseek-chat", "echo/echo-1"} <= ids
    model = client.models.retrieve("gpt-4o")
    assert model.owned_by == "openai"
    assert client.models.retrieve("meta-llama/Llama-3.3-70B-Instruct-Turbo").owned_by == "together"
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("no-such-model")
    assert exc.value.code == "model_not_found"


def test_the_clients_bytes_reach_an_openai_format_provider_untouched(gateway: Gateway) -> None:
    """A request the provider gets as it is (same model name, nothing taken out) goes upstream
    byte for byte: spacing, key order, number spellings and escapes as the client wrote them.
    Anything the gateway changes is rebuilt: a pinned name, the drop-params opt-in."""

    def post(raw: bytes) -> None:
        resp = httpx.post(
            gateway.info.base_url + "/chat/completions",
            content=raw,
            headers={"authorization": f"Bearer {gateway.info.admin_key}", "content-type": "application/json"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text

    raw = b'{ "messages" : [{"role": "user", "content": "caf\\u00e9"}],\n  "temperature": 1e0, "model": "gpt-4o" }'
    post(raw)
    assert gateway.sim.state.requests[-1].raw == raw

    post(raw.replace(b'"gpt-4o"', b'"openai/gpt-4o"'))  # the provider gets the model's own name
    sent = gateway.sim.state.requests[-1]
    assert sent.body["model"] == "gpt-4o" and sent.body["messages"][0]["content"] == "caf\u00e9"

    post(raw.replace(b" }", b', "drop_params": true }'))  # the opt-in is the gateway's, not the provider's
    sent = gateway.sim.state.requests[-1]
    assert "drop_params" not in sent.body and sent.body["temperature"] == 1.0
