"""A client that drops a stream cancels the upstream call and is billed for what it got."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import Gateway, wait_until
from tests.simulators.anthropic_sim import CACHE_READ, CACHE_WRITE
from tests.simulators.script import TEMPLATE_TOKENS


def test_client_disconnect_cancels_upstream_and_is_metered(gateway: Gateway) -> None:
    key = gateway.new_user_key("heidi")
    before = len(gateway.sim.state.streams)
    received = 0
    with httpx.stream(
        "POST",
        gateway.info.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-sim-long", "messages": [{"role": "user", "content": "go"}], "stream": True},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received == 10:
                break  # leaving the block closes the connection mid-stream

    log = gateway.sim.state.streams[before]
    wait_until(lambda: log.cancelled or log.completed, timeout=10, what="the upstream stream to end")
    assert log.cancelled and not log.completed, "the upstream call kept running after the client left"
    assert log.chunks_sent < 200

    wait_until(lambda: gateway.usage("heidi")["total_requests"] == 1, what="the cut stream's usage event")
    summary = gateway.usage("heidi")
    # No usage came from upstream: the gateway counted what it relayed (each "NNN " chunk is about one token).
    assert 9 <= summary["completion_tokens"] <= log.chunks_sent
    assert summary["prompt_tokens"] >= 1


PROMPT = "go " * 40  # 120 characters: the gateway would estimate 30 tokens


@pytest.mark.parametrize(("model", "provider"), [("claude-sim-long", "anthropic"), ("gemini-sim-long", "gemini")])
def test_client_leaving_a_translated_stream_cancels_it_and_is_metered(
    gateway: Gateway, model: str, provider: str
) -> None:
    user = f"leaver-{provider}"
    key = gateway.new_user_key(user)
    state = gateway.anthropic.state if provider == "anthropic" else gateway.gemini.state
    before = len(state.long_streams)
    received = 0
    with httpx.stream(
        "POST",
        gateway.info.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content":"0' in line:
                received += 1
            if received == 10:
                break

    log = state.long_streams[before]
    wait_until(lambda: log.cancelled or log.completed, timeout=10, what="the upstream stream to end")
    assert log.cancelled and not log.completed, "the upstream call kept running after the client left"
    wait_until(lambda: gateway.usage(user)["total_requests"] == 1, what="the cut stream's usage event")
    summary = gateway.usage(user)
    assert 9 <= summary["completion_tokens"] <= log.chunks_sent, summary  # estimated from what was relayed
    # The prompt count is the provider's own, given before the cut (Anthropic adds its cache
    # reads and writes): not the gateway's estimate of 30.
    assert summary["prompt_tokens"] == (
        30 + TEMPLATE_TOKENS + CACHE_READ + CACHE_WRITE if provider == "anthropic" else 30 + TEMPLATE_TOKENS
    )


def test_a_client_that_leaves_before_the_first_token_is_metered_and_the_provider_cut_off(
    gateway: Gateway,
) -> None:
    """The client gives up while the provider is still thinking: by the time the first token
    arrives nobody is listening. The provider has started to bill, so the request is metered
    (as a disconnect), and the provider's stream is closed at once, not whenever the garbage
    collector gets to it."""
    from tests.simulators.openai_sim import Fault

    key = gateway.new_user_key("early-leaver")
    model = "gpt-sim-early-leaver-long"
    gateway.sim.state.faults[model] = [Fault(first_chunk_delay=1.0)]
    before = len(gateway.sim.state.streams)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", int(gateway.origin.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        wait_until(lambda: len(gateway.sim.state.streams) > before, what="the provider to be asked")
    # Gone before the first token (a second away).
    log = gateway.sim.state.streams[before]
    wait_until(lambda: log.cancelled or log.completed, timeout=20, what="the upstream stream to end")
    assert log.cancelled and not log.completed, "the provider kept streaming to nobody"

    def metered() -> list[dict[str, object]]:
        resp = gateway.admin("GET", "/ai/usage/requests", params={"user": "early-leaver"})
        return list(resp.json()["data"]) if resp.status_code == 200 else []

    wait_until(lambda: len(metered()) == 1, timeout=30, what="the abandoned stream's usage event")
    row = metered()[0]
    assert row["status"] == 499 and row["error_type"] == "client_disconnected"
