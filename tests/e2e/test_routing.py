"""Routing that survives providers, through the whole stack with two edge processes (each on
its own port, as behind a load balancer): fallbacks and retries before the first byte, stream
timeouts, a stream cut mid-way, key storms, refused keys coming back, read-your-writes for
admin changes, and the configuration file reloaded on change and on SIGHUP.

The OpenAI simulator fails on demand (``Fault``s per model name); each test uses model names
of its own, so faults never leak between tests."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from stack.launcher import Stack
from stack.settings import StackSettings
from tests.conftest import PROVIDER_KEY, launch, stack_environ, wait_until
from tests.simulators.openai_sim import REPLY, Fault, OpenAISimulator

MESSAGES = [{"role": "user", "content": "route me"}]

CONFIG = """\
accounts:
  sim-main: {{provider: openai, base_url: "{sim}"}}
models:
  cfg-smart:
    targets: [openai/cfg-a, sim-main/gpt-4o-mini]
deprecated:
  cfg-old: cfg-smart
aliases:
  cfg-fast: sim-main/gpt-4o-mini
"""


@dataclass
class Edges:
    stack: Stack
    sim: OpenAISimulator
    admin_key: str
    origins: list[str]  # two edge processes
    config: Path

    clients: dict[tuple[int, str], OpenAI] = field(default_factory=dict)

    def client(self, i: int, key: str | None = None) -> OpenAI:
        """One SDK client per edge and key for the module (closed at its end)."""
        cache = (i % 2, key or self.admin_key)
        if cache not in self.clients:
            self.clients[cache] = OpenAI(base_url=self.origins[i % 2] + "/v1", api_key=cache[1], max_retries=0)
        return self.clients[cache]

    def admin(self, method: str, path: str, i: int = 0, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, self.origins[i % 2] + path, headers=headers, timeout=30, **kwargs)

    def chat(self, i: int, model: str, **kwargs: Any) -> httpx.Response:
        body = {"model": model, "messages": MESSAGES, **kwargs}
        return self.admin("POST", "/v1/chat/completions", i, json=body)

    def stream_events(self, i: int, model: str, key: str | None = None) -> list[str]:
        """The data of every event of a streamed chat answer, read raw (the SDK would raise at
        an error event)."""
        with httpx.stream(
            "POST",
            self.origins[i % 2] + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key or self.admin_key}"},
            json={"model": model, "messages": MESSAGES, "stream": True},
            timeout=30,
        ) as resp:
            assert resp.status_code == 200
            return [line.removeprefix("data: ") for line in resp.iter_lines() if line.startswith("data: ")]

    def put_route(self, name: str, spec: dict[str, Any]) -> None:
        resp = self.admin("PUT", f"/ai/routes/{name}", json=spec)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-switchyard-sync"] == "confirmed 2/2"

    def requests_for(self, model: str) -> list[str]:
        """The Authorization header of every request the simulator got for ``model``."""
        return [r.headers.get("Authorization", "") for r in self.sim.state.requests if r.body.get("model") == model]


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory, sim: OpenAISimulator) -> Iterator[Edges]:
    data = tmp_path_factory.mktemp("routing")
    config = data / "gateway.yaml"
    config.write_text(CONFIG.format(sim=sim.base_url))
    settings = StackSettings(GATEWAY_DATA_DIR=data, GATEWAY_PORT=0, GATEWAY_EDGE_WORKERS=1)
    environ = stack_environ(
        sim,
        GATEWAY_CONFIG=str(config),
        GATEWAY_KEY_PROBE_SECONDS="1",
        GATEWAY_CIRCUIT_FAILURES="3",
        GATEWAY_CIRCUIT_OPEN_SECONDS="5",  # long enough to see every edge skip the target
        GATEWAY_REGION="test-region",
    )
    stack = launch(settings, environ)
    try:
        assert stack.info is not None
        second = stack.add_edge("edge-b")
        origins = [stack.info.base_url.removesuffix("/v1"), second]
        edges = Edges(stack, sim, stack.info.admin_key, origins, config)

        def both_edges_heard() -> bool:  # the router knows an edge from its first health report
            resp = edges.admin("PUT", "/ai/routes/warm-up", json={"targets": ["openai/gpt-4o"]})
            return resp.headers.get("x-switchyard-sync") == "confirmed 2/2"

        wait_until(both_edges_heard, what="the router to hear both edges")
        yield edges
        for client in edges.clients.values():
            client.close()
    finally:
        stack.stop()


# --- fallbacks and retries, before the first byte -------------------------------------------


def test_a_503_falls_back_to_the_next_target(edges: Edges) -> None:
    edges.put_route("fo-503", {"targets": ["openai/fo-503-a", "openai/fo-503-b"]})
    for i in range(2):  # through each edge, streaming or not
        edges.sim.state.faults["fo-503-a"] = [Fault(status=503)]
        raw = edges.client(i).chat.completions.with_raw_response.create(model="fo-503", messages=MESSAGES)  # type: ignore[arg-type]
        reply = raw.parse()
        assert reply.choices[0].message.content == REPLY
        assert raw.headers["x-switchyard-attempts"] == "2"
        assert raw.headers["x-switchyard-provider"] == "openai" and raw.headers["x-switchyard-model"] == "fo-503-b"
        meta = reply.model_extra["x_switchyard"]  # type: ignore[index]
        assert meta["provider_used"] == "openai" and meta["model_used"] == "fo-503-b" and meta["attempts"] == 2
        assert meta["region"] == "test-region" and meta["routing_decision_id"].startswith("rd_")
        assert meta["routing_decision_id"] == raw.headers["x-switchyard-routing-decision"]

        edges.sim.state.faults["fo-503-a"] = [Fault(status=503)]
        chunks = list(
            edges.client(i).chat.completions.create(
                model="fo-503", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )  # type: ignore[call-overload]
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split() == REPLY.split()
        assert chunks[-1].usage is not None  # the usage chunk is still the last one ...
        assert chunks[-1].model_extra["x_switchyard"]["model_used"] == "fo-503-b"  # ... and carries the metadata


def test_a_429_is_retried_after_its_retry_after(edges: Edges) -> None:
    edges.put_route("fo-429", {"targets": ["openai/fo-429-a"], "retry": {"attempts": 2, "on": [429]}})
    edges.sim.state.faults["fo-429-a"] = [Fault(status=429, retry_after="1")]
    started = time.monotonic()
    resp = edges.chat(1, "fo-429")
    assert resp.status_code == 200, resp.text
    assert time.monotonic() - started >= 1.0  # it waited as the provider asked
    assert resp.headers["x-switchyard-attempts"] == "2" and len(edges.requests_for("fo-429-a")) == 2


def test_a_refused_connection_falls_back(edges: Edges) -> None:
    # Nothing listens at groq's base URL in this stack.
    edges.put_route("fo-conn", {"targets": ["groq/llama-down", "openai/fo-conn-b"]})
    for i in range(2):
        resp = edges.chat(i, "fo-conn")
        assert resp.status_code == 200, resp.text
        assert resp.json()["x_switchyard"]["model_used"] == "fo-conn-b"


def test_the_requests_own_error_is_not_retried(edges: Edges) -> None:
    edges.put_route("fo-400", {"targets": ["openai/fo-400-a", "openai/fo-400-b"], "retry": {"attempts": 3}})
    edges.sim.state.faults["fo-400-a"] = [Fault(status=400)]
    resp = edges.chat(0, "fo-400")
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert len(edges.requests_for("fo-400-a")) == 1 and not edges.requests_for("fo-400-b")


def test_a_stall_before_the_first_byte_times_out_and_falls_back(edges: Edges) -> None:
    edges.put_route(
        "fo-stall",
        {"targets": ["openai/fo-stall-a", "openai/fo-stall-b"], "timeouts": {"first_token_seconds": 2}},
    )
    for i, fault in enumerate([Fault(stall=8), Fault(first_chunk_delay=8)]):  # no headers / headers, no token
        edges.sim.state.faults["fo-stall-a"] = [fault]
        stream = edges.client(i).chat.completions.create(model="fo-stall", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split() == REPLY.split()
        assert chunks[-1].model_extra["x_switchyard"]["model_used"] == "fo-stall-b"
        assert chunks[-1].model_extra["x_switchyard"]["attempts"] == 2


def test_a_slow_first_token_within_its_bound_is_waited_for(edges: Edges) -> None:
    edges.put_route(
        "fo-slow", {"targets": ["openai/fo-slow-a", "openai/fo-slow-b"], "timeouts": {"first_token_seconds": 5}}
    )
    edges.sim.state.faults["fo-slow-a"] = [Fault(first_chunk_delay=1)]
    chunks = list(edges.client(1).chat.completions.create(model="fo-slow", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
    assert chunks[-1].model_extra["x_switchyard"] == chunks[-1].model_extra["x_switchyard"] | {
        "model_used": "fo-slow-a",
        "attempts": 1,
    }
    assert not edges.requests_for("fo-slow-b")


def test_a_stream_cut_after_three_chunks_ends_with_an_error_and_is_metered_as_partial(edges: Edges) -> None:
    key = edges.admin("POST", "/ai/keys", json={"user": "cut-user", "name": "t"}).json()["key"]
    edges.put_route("fo-cut", {"targets": ["openai/fo-cut-a", "openai/fo-cut-b"], "retry": {"attempts": 2}})
    edges.sim.state.faults["fo-cut-a"] = [Fault(cut_after=3)]
    events = edges.stream_events(1, "fo-cut", key)
    assert len(events) == 4  # three chunks, then the error: no retry after the first byte
    assert '"finish_reason": "stop"' not in "".join(events) and "[DONE]" not in events
    assert '"error"' in events[-1] and "upstream_disconnected" in events[-1]
    assert not edges.requests_for("fo-cut-b")

    # The official SDK raises on the error event instead of returning a short answer.
    edges.sim.state.faults["fo-cut-a"] = [Fault(cut_after=3)]
    with pytest.raises(openai.APIError):
        list(edges.client(0).chat.completions.create(model="fo-cut", messages=MESSAGES, stream=True))  # type: ignore[call-overload]

    def logged() -> list[dict[str, Any]]:
        resp = edges.admin("GET", "/ai/usage/requests", params={"user": "cut-user"})
        return list(resp.json()["data"]) if resp.status_code == 200 else []

    wait_until(lambda: len(logged()) == 1, what="the cut stream's usage event")
    row = logged()[0]
    assert row["status"] == 502 and row["error_type"] == "upstream_disconnected" and row["usage_estimated"]
    assert 1 <= row["completion_tokens"] <= 6 and row["model"] == "fo-cut-a"
    assert row["routing_decision_id"].startswith("rd_") and row["attempts"] == 1


def test_a_stream_that_goes_quiet_ends_with_an_error_and_the_provider_is_cut_off(edges: Edges) -> None:
    # (under the stack's 1.5 s socket read timeout, GATEWAY_UPSTREAM_TIMEOUT_SECONDS, which would end it too)
    edges.put_route("fo-idle", {"targets": ["openai/fo-idle-a"], "timeouts": {"idle_seconds": 1}})
    edges.sim.state.faults["fo-idle-a"] = [Fault(pause_after=2, pause=30)]
    before = len(edges.sim.state.streams)
    events = edges.stream_events(0, "fo-idle")
    assert len(events) == 4  # the role chunk, two words, then the error: nothing looks complete
    assert "upstream_stalled" in events[-1] and "sent nothing for 1 s" in events[-1]
    assert "[DONE]" not in events and '"finish_reason": "stop"' not in "".join(events)
    log = next(s for s in edges.sim.state.streams[before:] if s.model == "fo-idle-a")
    wait_until(lambda: log.cancelled, what="the provider's stream to be cut off")


def test_a_stream_past_its_total_time_ends_with_an_error_and_the_provider_is_cut_off(edges: Edges) -> None:
    """total_seconds bounds a stream that keeps the connection busy (every stream has one: the
    catalog's default is an hour)."""
    edges.put_route("fo-long", {"targets": ["openai/fo-long-a"], "timeouts": {"idle_seconds": 30, "total_seconds": 1}})
    edges.sim.state.faults["fo-long-a"] = [Fault(pause_after=2, pause=30)]
    before = len(edges.sim.state.streams)
    events = edges.stream_events(0, "fo-long")
    assert "upstream_total_timeout" in events[-1] and "did not finish within 1 s" in events[-1]
    assert "[DONE]" not in events and '"finish_reason": "stop"' not in "".join(events)
    log = next(s for s in edges.sim.state.streams[before:] if s.model == "fo-long-a")
    wait_until(lambda: log.cancelled, what="the provider's stream to be cut off")


def test_a_429_storm_across_every_key_moves_to_the_next_target(edges: Edges) -> None:
    resp = edges.admin("PUT", "/ai/accounts/storm", json={"provider": "openai", "base_url": edges.sim.base_url})
    assert resp.status_code == 200 and resp.headers["x-switchyard-sync"] == "confirmed 2/2", resp.text
    for label in ("one", "two", "three"):
        body = {"provider": "storm", "api_key": f"sk-ratelimited-{label}", "label": label}
        assert edges.admin("POST", "/ai/providers/keys", json=body).status_code == 201
    edges.put_route(
        "fo-storm",
        {"targets": ["storm/fo-storm-a", "openai/fo-storm-b"], "retry": {"attempts": 3, "max_wait_seconds": 2}},
    )
    started = time.monotonic()
    for i in range(12):
        resp = edges.chat(i, "fo-storm")
        assert resp.status_code == 200, resp.text
        assert resp.json()["x_switchyard"]["model_used"] == "fo-storm-b"
    # Each edge tried each key once per cooldown (retry-after: 7 s), not once per request.
    storm = edges.requests_for("fo-storm-a")
    assert sorted(set(storm)) == [f"Bearer sk-ratelimited-{x}" for x in ("one", "three", "two")]
    windows = 1 + int((time.monotonic() - started) // 7)
    assert len(storm) <= 3 * 2 * windows < 12 * 3
    # Alone, the account answers the truth: every key is cooling down (the second call at
    # the latest: the first may have found the cooldowns over and refreshed them).
    edges.chat(0, "storm/fo-storm-a")
    resp = edges.chat(0, "storm/fo-storm-a")
    assert resp.status_code == 429 and "cooling down" in resp.json()["error"]["message"]
    assert 1 <= int(resp.headers["retry-after"]) <= 7


# --- keys: read-your-writes, refusals, truthful errors ---------------------------------------


def test_read_your_writes_add_a_key_and_call_at_once_twenty_times(edges: Edges) -> None:
    resp = edges.admin("PUT", "/ai/accounts/ryw", json={"provider": "openai", "base_url": edges.sim.base_url})
    assert resp.status_code == 200, resp.text
    for i in range(20):
        secret = f"sk-ryw-{i:02d}-0123456789"
        created = edges.admin("POST", "/ai/providers/keys", i, json={"provider": "ryw", "api_key": secret})
        assert created.status_code == 201, created.text
        assert created.headers["x-switchyard-sync"] == "confirmed 2/2"
        answer = edges.chat(i + 1, "ryw/gpt-4o")  # the other edge, at once
        assert answer.status_code == 200, answer.text
        assert edges.requests_for("gpt-4o")[-1] == f"Bearer {secret}"
        client_key = edges.admin("POST", "/ai/keys", i, json={"user": f"ryw-{i}", "name": "k"}).json()["key"]
        assert edges.client(i + 1, client_key).models.list().data  # a new client key works everywhere at once
        gone = edges.admin("DELETE", f"/ai/providers/keys/{created.json()['id']}", i + 1)
        assert gone.status_code == 200 and gone.headers["x-switchyard-sync"] == "confirmed 2/2"
        missing = edges.chat(i, "ryw/gpt-4o")
        assert missing.status_code == 503 and missing.json()["error"]["code"] == "provider_key_missing"
        assert "No API key is configured for provider 'ryw'" in missing.json()["error"]["message"]


def test_a_refused_key_says_so_and_comes_back_by_itself(edges: Edges) -> None:
    secret = "sk-flaky-0123456789"
    edges.sim.state.revoked.add(secret)
    edges.admin("PUT", "/ai/accounts/flaky", json={"provider": "openai", "base_url": edges.sim.base_url})
    added = edges.admin("POST", "/ai/providers/keys", json={"provider": "flaky", "api_key": secret})
    assert added.status_code == 201
    key_id = added.json()["id"]
    first = edges.chat(0, "flaky/gpt-4o")  # the provider's own answer, as it is
    assert first.status_code == 401 and first.json()["error"]["message"] == "simulated 401"
    then = edges.chat(0, "flaky/gpt-4o")  # from now on: the truth, not "no key configured"
    assert then.status_code == 503 and then.json()["error"]["code"] == "provider_key_refused"
    assert "refused by the provider (HTTP 401 since" in then.json()["error"]["message"]

    def listed() -> dict[str, Any]:
        return next(k for k in edges.admin("GET", "/ai/providers/keys").json()["data"] if k["id"] == key_id)

    wait_until(lambda: listed()["status"] == "invalid", what="the key to be marked invalid")
    assert "401" in listed()["status_reason"] and listed()["status_since"] is not None

    def other_edge_tells_why() -> bool:  # from keyvault's delivery (or its own 401 first)
        other = edges.chat(1, "flaky/gpt-4o")
        return other.status_code == 503 and "refused by the provider" in other.json()["error"]["message"]

    wait_until(other_edge_tells_why, what="the other edge to say why")

    edges.sim.state.revoked.discard(secret)  # the provider accepts it again
    wait_until(lambda: listed()["status"] == "active", what="the probe to bring the key back")
    assert listed()["status_reason"].startswith("probe:")
    wait_until(lambda: all(edges.chat(i, "flaky/gpt-4o").status_code == 200 for i in range(2)), what="both edges")


# --- models, aliases, deprecations, explain --------------------------------------------------


def test_seed_names_resolve_and_retired_models_say_so(edges: Edges) -> None:
    resp = edges.chat(0, "sim-main/gpt-4o-mini")  # a named account from the file: its own keys
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "provider_key_missing"
    key = {"provider": "sim-main", "api_key": "sk-sim-main-0123456789", "label": "main"}
    assert edges.admin("POST", "/ai/providers/keys", json=key).status_code == 201
    resp = edges.chat(1, "sim-main/gpt-4o-mini")
    assert resp.status_code == 200 and resp.headers["x-switchyard-provider"] == "sim-main"
    assert edges.requests_for("gpt-4o-mini")[-1] == "Bearer sk-sim-main-0123456789"
    assert edges.chat(1, "cfg-fast").headers["x-switchyard-provider"] == "sim-main"
    for old, successor in [("claude-3-5-sonnet-20240620", "claude-sonnet-4-6"), ("cfg-old", "cfg-smart")]:
        resp = edges.admin("GET", "/ai/routes/explain", params={"model": old})
        assert resp.json()["deprecated_successor"] == successor
    resp = edges.chat(0, "cfg-old")
    assert resp.status_code == 200
    assert resp.headers["deprecation"] == "true" and resp.headers["x-model-deprecated-successor"] == "cfg-smart"
    listed = {m.id for m in edges.client(1).models.list().data}
    assert {"cfg-smart", "fo-503", "claude-sonnet-4-6"} <= listed
    assert "claude-sonnet-4-5" not in listed and "claude-3-5-sonnet-20240620" not in listed
    for alias, model in [("claude-opus", "claude-opus-5-5"), ("gemini-pro", "gemini-3.1-pro-preview")]:
        explained = edges.admin("GET", "/ai/routes/explain", params={"model": alias}).json()
        assert explained["resolved"] == model and explained["targets"][0]["upstream_model"] == model


def test_explain_shows_the_order_and_open_circuits(edges: Edges) -> None:
    edges.put_route("fo-down", {"targets": ["openai/fo-down-a", "openai/fo-down-b"]})
    edges.sim.state.faults["fo-down-a"] = [Fault(status=500) for _ in range(3)]
    for i in range(3):
        assert edges.chat(i, "fo-down").status_code == 200

    def explained() -> dict[str, Any]:
        return dict(edges.admin("GET", "/ai/routes/explain", 1, params={"model": "fo-down"}).json())

    wait_until(lambda: explained()["targets"][-1]["circuit"]["state"] == "open", what="the circuit to open")
    down = explained()["targets"][-1]
    assert down["target"] == "openai/fo-down-a" and down["skipped"] and "500" in down["circuit"]["reason"]
    sent = len(edges.requests_for("fo-down-a"))
    for i in range(4):  # every edge skips it now
        assert edges.chat(i, "fo-down").json()["x_switchyard"]["attempts"] == 1
    assert len(edges.requests_for("fo-down-a")) == sent
    # After the open period a probe request goes through, succeeds, and closes it again.
    wait_until(lambda: explained()["targets"][-1]["circuit"]["state"] == "half_open", what="half-open")

    def closed() -> bool:
        edges.chat(0, "fo-down")
        return bool(
            explained()["targets"][0]["circuit"]["state"] == "closed" and not explained()["targets"][0]["skipped"]
        )

    wait_until(closed, what="the circuit to close")


# --- routes and accounts through the admin API, and the configuration file --------------------


def test_routes_and_accounts_admin_api(edges: Edges) -> None:
    edges.put_route("api-route", {"targets": ["openai/gpt-4o"], "strategy": "cheapest"})
    got = edges.admin("GET", "/ai/routes/api-route", 1).json()
    assert got["source"] == "api" and got["spec"]["strategy"] == "cheapest"
    listing = edges.admin("GET", "/ai/routes").json()
    assert {"api-route", "cfg-smart"} <= {r["name"] for r in listing["data"]}
    assert listing["config_file"] == str(edges.config) and listing["config_error"] == ""
    assert edges.chat(1, "api-route").status_code == 200
    # A route of the file is changed in the file; a bad route is refused with the reason.
    assert edges.admin("PUT", "/ai/routes/cfg-smart", json={"targets": ["openai/gpt-4o"]}).status_code == 409
    bad = edges.admin("PUT", "/ai/routes/bad", json={"targets": ["nowhere/x"]})
    assert bad.status_code == 400 and "nowhere/x" in bad.json()["error"]["message"]
    bad = edges.admin("PUT", "/ai/routes/bad", json={"targets": ["openai/gpt-4o"], "strategy": "weighted"})
    assert bad.status_code == 400 and "weight" in bad.json()["error"]["message"]
    gone = edges.admin("DELETE", "/ai/routes/api-route", 1)
    assert gone.status_code == 200 and gone.headers["x-switchyard-sync"] == "confirmed 2/2"
    assert edges.chat(0, "api-route").status_code == 404  # in force everywhere when the call returned
    assert edges.admin("GET", "/ai/routes/api-route").status_code == 404
    assert edges.admin("GET", "/ai/accounts/sim-main").json()["source"] == "file"
    assert edges.admin("DELETE", "/ai/accounts/nope").status_code == 404


def test_the_configuration_file_is_reloaded_on_change_and_on_sighup(edges: Edges) -> None:
    original = edges.config.read_text()
    try:
        edges.config.write_text(original + "  cfg-new: gpt-4o\n")
        wait_until(lambda: edges.chat(1, "cfg-new").status_code == 200, what="the changed file in force")

        # An invalid version is refused naming its line; the running configuration stays.
        edges.config.write_text(original + "  cfg-new: gpt-4o\n  cfg-bad: nowhere/at-all\n")
        line = len(original.splitlines()) + 2

        def refused() -> str:
            return str(edges.admin("GET", "/ai/routes").json()["config_error"])

        wait_until(lambda: f"line {line}:" in refused(), what="the refusal")
        assert edges.chat(0, "cfg-new").status_code == 200 and edges.chat(0, "cfg-smart").status_code == 200

        # A change the periodic check cannot see (same size, same modification time) is read on SIGHUP.
        edges.config.write_text(original + "  cfg-new: gpt-4o\n")
        wait_until(lambda: refused() == "", what="the valid file back in force")
        stat = edges.config.stat()
        edges.config.write_text(original + "  cfg-hup: gpt-4o\n")
        os.utime(edges.config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert edges.chat(0, "cfg-hup").status_code == 404
        pid = edges.stack.supervisor.pid("router")
        assert pid is not None
        os.kill(pid, signal.SIGHUP)
        wait_until(lambda: edges.chat(1, "cfg-hup").status_code == 200, what="the file read on SIGHUP")
    finally:
        edges.config.write_text(original)
    wait_until(lambda: edges.chat(0, "cfg-hup").status_code == 404, what="the original file back")


def test_the_env_provider_key_still_serves_plain_models(edges: Edges) -> None:
    resp = edges.chat(1, "gpt-4o")
    assert resp.status_code == 200 and resp.headers["x-switchyard-attempts"] == "1"
    assert edges.requests_for("gpt-4o")[-1] == f"Bearer {PROVIDER_KEY}"


def test_embeddings_carry_the_routing_metadata_too(edges: Edges) -> None:
    edges.put_route("fo-embed", {"targets": ["openai/fo-embed-a", "openai/text-embedding-3-small"]})
    edges.sim.state.faults["fo-embed-a"] = [Fault(status=503)]
    raw = edges.client(0).embeddings.with_raw_response.create(model="fo-embed", input="hello")
    reply = raw.parse()
    assert len(reply.data[0].embedding) == 8  # the simulator's default dimension
    assert raw.headers["x-switchyard-attempts"] == "2"  # a 503, then the next target
    assert reply.model_extra["x_switchyard"]["model_used"] == "text-embedding-3-small"  # type: ignore[index]


def test_strategies_cheapest_weighted_and_fastest(edges: Edges) -> None:
    edges.put_route("st-cheap", {"targets": ["openai/gpt-4o", "openai/gpt-4o-mini"], "strategy": "cheapest"})
    edges.put_route(
        "st-weight", {"targets": ["openai/gpt-4o", "openai/gpt-4.1"], "strategy": "weighted", "weights": [0, 1]}
    )
    for i in range(4):
        assert edges.chat(i, "st-cheap").json()["x_switchyard"]["model_used"] == "gpt-4o-mini"
        assert edges.chat(i, "st-weight").json()["x_switchyard"]["model_used"] == "gpt-4.1"

    # fastest: the edges measure each target's time to first token; the router publishes it.
    edges.sim.state.faults["fo-fast-lag"] = [Fault(first_chunk_delay=0.6) for _ in range(2)]
    for target in ("openai/fo-fast-lag", "openai/fo-fast-quick"):
        resp = edges.chat(0, target, stream=True)
        assert resp.status_code == 200, resp.text
    edges.put_route("st-fast", {"targets": ["openai/fo-fast-lag", "openai/fo-fast-quick"], "strategy": "fastest"})

    def measured() -> dict[str, Any]:
        rows = edges.admin("GET", "/ai/routes/explain", 1, params={"model": "st-fast"}).json()["targets"]
        return {r["target"]: r["circuit"].get("ttft_ms") for r in rows}

    wait_until(lambda: None not in measured().values(), what="both targets measured")
    ttft = measured()
    assert ttft["openai/fo-fast-lag"] >= 500 > ttft["openai/fo-fast-quick"]
    assert list(ttft) == ["openai/fo-fast-quick", "openai/fo-fast-lag"]  # explain lists the try order
    for i in range(2):
        assert edges.chat(i, "st-fast").json()["x_switchyard"]["model_used"] == "fo-fast-quick"
