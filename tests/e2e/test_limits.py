"""Limits and budgets across three edge processes on one NATS: requests per minute admitted
exactly, tokens per minute and requests in flight never over, a budget's overshoot measured,
limits of a key, a user and a project together, the headers on success and on both kinds of
429, and limit changes in force on every edge when the admin call returns."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Gateway, wait_until
from tests.simulators.openai_sim import PROMPT_TOKENS, REPLY

MESSAGES = [{"role": "user", "content": "hi"}]
REPLY_TOKENS = PROMPT_TOKENS + len(REPLY.split())  # what the simulator reports per answer
RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset",
    "x-ratelimit-scope",
)


@pytest.fixture(scope="module")
def edges(gateway: Gateway) -> Iterator[list[str]]:
    """The gateway's edge and two more, each its own process on its own port."""
    extra = [gateway.stack.add_edge("edge-limits-b"), gateway.stack.add_edge("edge-limits-c")]

    def heard() -> bool:  # the router confirms changes with the edges it has heard from
        resp = gateway.admin("PUT", "/ai/users/limits-probe", json={"rpm": 1000})
        return resp.headers.get("x-switchyard-sync") == "confirmed 3/3"

    wait_until(heard, what="the router to hear three edges")
    yield [gateway.origin, *extra]
    for name in ("edge-limits-b", "edge-limits-c"):
        gateway.stack.supervisor.stop(name)


def _key(gateway: Gateway, user: str, **fields: Any) -> dict[str, Any]:
    resp = gateway.admin("POST", "/ai/keys", json={"user": user, "name": "limits", **fields})
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-switchyard-sync"] == "confirmed 3/3"
    return dict(resp.json())


def _chat(origin: str, key: str, model: str = "gpt-4o-mini", **extra: Any) -> httpx.Response:
    return httpx.post(
        origin + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": MESSAGES, **extra},
        timeout=60,
    )


def _burst(edges: list[str], key: str, n: int, model: str = "gpt-4o-mini", **extra: Any) -> list[httpx.Response]:
    """``n`` requests at once, spread round-robin over the edges."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda i: _chat(edges[i % len(edges)], key, model, **extra), range(n)))


def _in_one_minute(run: Any) -> Any:
    """Run a burst that must fall in one per-minute window; a burst that crossed a minute's
    end (the counters start afresh) is run again, with a new key."""
    for _ in range(3):
        start = time.time()
        result = run()
        if math.floor(start / 60) == math.floor(time.time() / 60):
            return result
    pytest.fail("three bursts in a row crossed a minute's end")


def test_rpm_admits_exactly_the_limit_across_three_edges(gateway: Gateway, edges: list[str]) -> None:
    def run() -> list[httpx.Response]:
        key = _key(gateway, "limits-rpm", rpm=10)["key"]
        return _burst(edges, key, 30)

    answers = _in_one_minute(run)
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert (len(ok), len(refused)) == (10, 20), [r.status_code for r in answers]
    for resp in refused:
        error = resp.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert 1 <= int(resp.headers["retry-after"]) <= 60
        assert resp.headers["x-ratelimit-limit-requests"] == "10"
        assert resp.headers["x-ratelimit-remaining-requests"] == "0"
        assert resp.headers["x-ratelimit-scope"] == "key"
    for resp in ok:
        assert all(h in resp.headers for h in RATE_HEADERS)
        assert resp.headers["x-ratelimit-limit-tokens"] == "unlimited"
        assert 0 <= int(resp.headers["x-ratelimit-remaining-requests"]) < 10


def test_tpm_never_admits_more_tokens_than_the_limit(gateway: Gateway, edges: list[str]) -> None:
    # Each request reserves its prompt estimate and max_tokens (50), and settles to the 16
    # tokens the simulator reports: what is admitted never adds up to more than 400 tokens.
    def run() -> list[httpx.Response]:
        key = _key(gateway, "limits-tpm", tpm=400)["key"]
        return _burst(edges, key, 45, max_tokens=50)

    answers = _in_one_minute(run)
    ok = [r for r in answers if r.status_code == 200]
    consumed = sum(r.json()["usage"]["total_tokens"] for r in ok)
    assert consumed <= 400
    assert len(ok) >= 400 // (len("hi") + 16 + 50)  # at least as many as fit at full reservation
    refused = [r for r in answers if r.status_code == 429]
    assert refused, "45 requests reserving 68 tokens each cannot all fit in 400"
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    assert all(r.headers["x-ratelimit-limit-tokens"] == "400" for r in answers)

    # A request that could never fit is told so, whatever is left.
    key = _key(gateway, "limits-tpm-big", tpm=100)["key"]
    too_big = _chat(edges[1], key, max_tokens=500)
    assert too_big.status_code == 429 and "lower max_tokens" in too_big.json()["error"]["message"]


def test_max_parallel_never_has_more_in_flight(gateway: Gateway, edges: list[str]) -> None:
    key = _key(gateway, "limits-parallel", max_parallel=3)["key"]
    answers = _burst(edges, key, 12, model="gpt-4o-mini-par-hold")
    assert gateway.sim.state.peak_in_flight["gpt-4o-mini-par-hold"] <= 3
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) >= 3
    refused = [r for r in answers if r.status_code == 429]
    assert refused and all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in refused)
    assert all(r.headers["retry-after"] == "1" for r in refused)
    # The slots come back when the requests end: the next three are admitted again.
    again = _burst(edges, key, 3, model="gpt-4o-mini-par-hold")
    assert [r.status_code for r in again] == [200, 200, 200]


def test_budget_overshoot_is_within_the_settlement_bound(gateway: Gateway, edges: list[str]) -> None:
    budget = 0.0002
    made = _key(gateway, "limits-budget", budget_usd=budget, budget_period="day")
    key, key_id = made["key"], made["id"]
    assert made["budget_period"] == "day"
    # gpt-4o-mini at $0.15/$0.60 per million: a request reserves (18 prompt + 100 max) tokens,
    # about $0.0000627, and costs what the simulator reports, about $0.000004.
    reservation = (18 * 0.15 + 100 * 0.60) / 1e6
    admitted, budget_refusals, last_ok = 0, [], None
    for _ in range(40):  # bursts of nine until the budget refuses every request of a burst
        answers = _burst(edges, key, 9, max_tokens=100)
        statuses = [r.status_code for r in answers]
        admitted += statuses.count(200)
        budget_refusals += [r for r in answers if r.status_code == 429]
        last_ok = next((r for r in answers if r.status_code == 200), last_ok)
        if 200 not in statuses:
            break
    assert budget_refusals, "the budget never refused a request"
    for resp in budget_refusals:
        error = resp.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
        assert float(resp.headers["x-budget-limit-usd"]) == pytest.approx(budget)
        assert float(resp.headers["x-budget-remaining-usd"]) < reservation
        assert all(h in resp.headers for h in RATE_HEADERS)
    # The OpenAI SDK surfaces it as a quota error.
    with pytest.raises(openai.RateLimitError) as raised:
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)  # type: ignore[arg-type]
    assert raised.value.code == "budget_exceeded"

    # Every admitted request is metered; the spend may pass the budget by at most what the
    # requests in flight at once consumed beyond their reservations, which is nothing here.
    wait_until(lambda: gateway.requests_metered("limits-budget") >= admitted + len(budget_refusals) + 1)
    spent = gateway.usage("limits-budget")["total_cost_usd"]
    per_request = spent / admitted
    overshoot_bound = max(per_request - reservation, 0.0) * 9  # nine in flight at once
    assert spent <= budget + overshoot_bound + 1e-12
    assert overshoot_bound == 0.0
    # Under-admission is bounded too: what is left is less than a reservation for each edge
    # that may hold a lease, plus the one refused.
    assert budget - spent < reservation * (len(edges) + 1)

    # The key shows its spend, what is left and when the period resets (midnight UTC).
    def shown() -> dict[str, Any]:
        return dict(gateway.admin("GET", f"/ai/keys/{key_id}").json()["budget"])

    wait_until(lambda: shown()["spent_usd"] >= spent - 1e-12, what="settled spend to reach the counter")
    status = shown()
    assert status["limit_usd"] == budget and status["period"] == "day"
    assert status["resets_at"] == (math.floor(time.time() / 86400) + 1) * 86400
    assert status["remaining_usd"] <= budget - spent + 1e-12
    listed = gateway.admin("GET", "/ai/usage/budgets", key=key).json()["data"]
    assert [(b["scope"], b["id"]) for b in listed] == [("key", key_id)]


def test_user_and_project_limits_count_every_key_and_the_strictest_applies(gateway: Gateway, edges: list[str]) -> None:
    assert gateway.admin("POST", "/ai/projects", json={"name": "limits-proj", "rpm": 4}).status_code == 201
    a = _key(gateway, "limits-team-a", project="limits-proj", rpm=100)["key"]
    b = _key(gateway, "limits-team-b", project="limits-proj")["key"]
    put = gateway.admin("PUT", "/ai/users/limits-team-a", json={"rpm": 50, "tpm": 100000})
    assert put.status_code == 200 and put.headers["x-switchyard-sync"] == "confirmed 3/3"

    def run() -> list[httpx.Response]:
        with ThreadPoolExecutor(max_workers=12) as pool:
            return list(pool.map(lambda i: _chat(edges[i % 3], a if i % 2 else b), range(12)))

    answers = _in_one_minute(run)
    assert [r.status_code for r in answers].count(200) == 4  # the project's 4, shared by both keys
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["x-ratelimit-scope"] == "project"
    assert "project 'limits-proj'" in refused.json()["error"]["message"]
    # The user's own view; another user's is not theirs to read.
    assert gateway.admin("GET", "/ai/users/limits-team-a", key=a).json()["rpm"] == 50
    assert gateway.admin("GET", "/ai/users/limits-team-b", key=a).status_code == 403
    # Lifting the project's limit is in force on every edge at once.
    patched = gateway.admin("PATCH", "/ai/projects/limits-proj", json={"rpm": None})
    assert patched.status_code == 200 and patched.json()["rpm"] is None
    assert patched.headers["x-switchyard-sync"] == "confirmed 3/3"
    assert [_chat(origin, b).status_code for origin in edges] == [200, 200, 200]


def test_a_limit_change_is_in_force_on_every_edge_when_the_call_returns(gateway: Gateway, edges: list[str]) -> None:
    made = _key(gateway, "limits-change")
    key, key_id = made["key"], made["id"]
    unlimited = _chat(edges[0], key)
    assert unlimited.status_code == 200
    for dim in ("requests", "tokens"):
        assert unlimited.headers[f"x-ratelimit-limit-{dim}"] == "unlimited"
        assert unlimited.headers[f"x-ratelimit-remaining-{dim}"] == "unlimited"
    assert "x-budget-remaining-usd" not in unlimited.headers

    def run() -> list[int]:
        patched = gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"rpm": 2})
        assert patched.status_code == 200 and patched.headers["x-switchyard-sync"] == "confirmed 3/3"
        return [_chat(origin, key).status_code for origin in (edges[1], edges[2], edges[1], edges[2])]

    assert _in_one_minute(run).count(200) <= 2
    assert gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"rpm": None}).json()["rpm"] is None
    assert [_chat(origin, key).status_code for origin in edges] == [200, 200, 200]
    bad = gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"rpm": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"


def test_embeddings_count_against_the_same_limits(gateway: Gateway, edges: list[str]) -> None:
    def run() -> list[int]:
        key = _key(gateway, "limits-embed", rpm=3)["key"]
        headers = {"authorization": f"Bearer {key}"}
        body = {"model": "text-embedding-3-small", "input": "limit me"}
        codes = []
        for i in range(5):
            resp = httpx.post(edges[i % 3] + "/v1/embeddings", headers=headers, json=body, timeout=30)
            assert resp.headers["x-ratelimit-limit-requests"] == "3"
            codes.append(resp.status_code)
        return codes

    assert _in_one_minute(run) == [200, 200, 200, 429, 429]


def test_a_key_holds_at_most_its_share_of_streams_on_an_edge_process(gateway: Gateway) -> None:
    """GATEWAY_MAX_STREAMS_PER_KEY caps the streams one key holds open on one edge process (a
    429 before any upstream call); another key, and the same key on another edge, are not
    affected; a stream that ends gives its place back, also when its client walks away."""
    from tests.simulators.openai_sim import Fault

    origin = gateway.stack.add_edge("edge-streams", {"GATEWAY_MAX_STREAMS_PER_KEY": "2"})
    model = "gpt-sim-held-streams"
    gateway.sim.state.faults[model] = [Fault(pause_after=1, pause=60) for _ in range(8)]
    key, other = gateway.new_user_key("streams-cap"), gateway.new_user_key("streams-other")
    capped = openai.OpenAI(base_url=origin + "/v1", api_key=key, max_retries=0, timeout=30)
    held = []
    try:
        for _ in range(2):
            stream = capped.chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[call-overload]
            next(iter(stream))  # open: its first chunk is here, the rest is 60 s away
            held.append(stream)
        asked = len(gateway.sim.state.requests)
        with pytest.raises(openai.RateLimitError) as refused:
            capped.chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[call-overload]
        error = refused.value.body
        assert isinstance(error, dict) and error["code"] == "too_many_concurrent_streams"
        assert len(gateway.sim.state.requests) == asked  # refused before any upstream call
        # A non-streamed request of the same key is not a stream.
        assert capped.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
        # Another key on this process, and this key on another edge, have their own room.
        mine = openai.OpenAI(base_url=origin + "/v1", api_key=other, max_retries=0, timeout=30)
        for client in (mine, gateway.client(key)):
            assert list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[call-overload]

        held.pop().close()  # the client walks away mid-stream: its place comes back

        def room() -> bool:
            try:
                return bool(list(capped.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)))  # type: ignore[call-overload]
            except openai.RateLimitError:
                return False

        wait_until(room, timeout=30, what="the closed stream's place")
    finally:
        for stream in held:
            stream.close()
        gateway.sim.state.faults.pop(model, None)
        gateway.stack.supervisor.stop("edge-streams")


def test_a_reservation_counts_every_choice_and_the_largest_output_limit(gateway: Gateway, edges: list[str]) -> None:
    """``n`` choices may each be ``max_tokens`` long, and a body naming two output limits may
    be held to the larger by the provider: the reservation counts both ways, and a request
    that could not fit is refused before any upstream call. Limits that are not positive
    integers are a 400 (they were answered 200, reserving nothing of what they asked for)."""
    key = _key(gateway, "limits-choices", tpm=1000)["key"]
    sent = len(gateway.sim.state.requests)
    many = _chat(edges[0], key, max_tokens=100, n=20)  # 2,000 tokens: one choice would fit
    assert many.status_code == 429 and "lower max_tokens" in many.json()["error"]["message"]
    both = _chat(edges[1], key, max_tokens=64_000, max_completion_tokens=1)
    assert both.status_code == 429 and "lower max_tokens" in both.json()["error"]["message"]
    assert len(gateway.sim.state.requests) == sent
    assert _chat(edges[2], key, max_tokens=100, n=2).status_code == 200

    for field, value, code in (
        ("max_tokens", True, "invalid_type"),
        ("max_tokens", 12.5, "invalid_type"),
        ("max_completion_tokens", "8", "invalid_type"),
        ("max_tokens", 0, "integer_below_min_value"),
        ("n", 129, "integer_above_max_value"),
    ):
        bad = _chat(edges[0], key, **{field: value})
        assert bad.status_code == 400, (field, value, bad.text)
        assert bad.json()["error"]["param"] == field and bad.json()["error"]["code"] == code
    assert len(gateway.sim.state.requests) == sent + 1
