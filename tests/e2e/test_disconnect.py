"""A client that drops a stream cancels the upstream call and is billed for what it got."""

from __future__ import annotations

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
