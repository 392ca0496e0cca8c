"""The usage API beyond the summary: prices, timeseries, the request log, dead letters."""

from __future__ import annotations

import asyncio
import time

from shared import subjects
from shared.bus import Bus
from tests.conftest import Gateway, wait_until
from tests.simulators.openai_sim import CACHED_TOKENS, PROMPT_TOKENS, REPLY

MESSAGES = [{"role": "user", "content": "price me"}]
COMPLETION = len(REPLY.split())
REASONING = 2  # the simulator reports two reasoning tokens in every completion


def test_admin_price_applies_from_its_effective_time_only(gateway: Gateway) -> None:
    key = gateway.new_user_key("judy")
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-sim-priced", messages=MESSAGES)  # not priced yet
    wait_until(lambda: gateway.usage("judy")["total_requests"] == 1, what="first event")
    summary = gateway.usage("judy")
    assert summary["total_cost_usd"] == 0.0
    # Not silently free: the summary says the cost is missing, and for which model.
    assert summary["unpriced_requests"] == 1
    (model,) = summary["by_model"]
    assert (model["model"], model["price_missing"], model["unpriced_requests"]) == ("gpt-sim-priced", True, 1)

    resp = gateway.admin(
        "POST",
        "/ai/prices",
        json={
            "model": "gpt-sim-priced",
            "provider": "openai",
            "input": 4.0,
            "output": 20.0,
            "cached_input": 1.0,
            "reasoning": 40.0,
        },
    )
    assert resp.status_code == 201, resp.text
    version = resp.json()["version"]
    assert version.startswith("admin-")
    listed = {(p["provider"], p["model"]): p for p in gateway.admin("GET", "/ai/prices").json()["data"]}
    assert listed[("openai", "gpt-sim-priced")]["version"] == version
    assert listed[("openai", "gpt-4o")]["source"] == "catalog"

    client.chat.completions.create(model="gpt-sim-priced", messages=MESSAGES)
    wait_until(lambda: gateway.usage("judy")["total_requests"] == 2, what="second event")
    expected = (
        (PROMPT_TOKENS - CACHED_TOKENS) * 4.0 + CACHED_TOKENS * 1.0 + (COMPLETION - REASONING) * 20.0 + REASONING * 40.0
    ) / 1_000_000
    summary = gateway.usage("judy")
    assert abs(summary["total_cost_usd"] - expected) < 1e-12
    assert summary["unpriced_requests"] == 1  # the first request stays unpriced: its cost is fixed
    assert summary["by_model"][0]["requests"] == 2 and summary["by_model"][0]["unpriced_requests"] == 1
    priced = gateway.admin("GET", "/ai/usage/summary", params={"user": "judy", "model": "gpt-4o"}).json()
    assert priced["unpriced_requests"] == 0

    log = gateway.admin("GET", "/ai/usage/requests", params={"user": "judy"}).json()["data"]
    assert [r["price_version"] for r in log] == [version, "unpriced"]  # newest first
    assert log[0]["cached_tokens"] == CACHED_TOKENS and log[0]["reasoning_tokens"] == REASONING


def test_price_validation(gateway: Gateway) -> None:
    unknown = gateway.admin("POST", "/ai/prices", json={"model": "mystery", "input": 1, "output": 1})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "provider"
    negative = gateway.admin("POST", "/ai/prices", json={"model": "gpt-4o", "input": -1, "output": 1})
    assert negative.status_code == 400
    user_key = gateway.new_user_key("mallory")
    assert (
        gateway.admin("POST", "/ai/prices", key=user_key, json={"model": "gpt-4o", "input": 0, "output": 0}).status_code
        == 403
    )


def test_timeseries_and_request_log(gateway: Gateway) -> None:
    key = gateway.new_user_key("kim")
    client = gateway.client(key)
    for _ in range(5):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    client.chat.completions.create(model="echo/k", messages=[{"role": "user", "content": "a b"}])
    wait_until(lambda: gateway.usage("kim")["total_requests"] == 6, what="six events")

    series = gateway.admin(
        "GET", "/ai/usage/timeseries", params={"user": "kim", "granularity": "hour", "period": "24h"}
    )
    assert series.status_code == 200
    points = series.json()["data"]
    assert sum(p["requests"] for p in points) == 6
    assert points[-1]["start"] <= time.time() < points[-1]["start"] + 3600
    day = gateway.admin("GET", "/ai/usage/timeseries", params={"user": "kim", "granularity": "day"}).json()["data"]
    assert sum(p["total_tokens"] for p in day) == gateway.usage("kim")["total_tokens"]

    # Filter by model and provider.
    by_provider = gateway.admin("GET", "/ai/usage/summary", params={"user": "kim", "provider": "echo"}).json()
    assert by_provider["total_requests"] == 1

    # Paginate the request log: 4 + 2, newest first, nothing twice.
    first = gateway.admin("GET", "/ai/usage/requests", params={"user": "kim", "limit": 4}).json()
    assert first["has_more"] is True and len(first["data"]) == 4
    second = gateway.admin(
        "GET", "/ai/usage/requests", params={"user": "kim", "limit": 4, "before": first["next_cursor"]}
    ).json()
    assert second["has_more"] is False and len(second["data"]) == 2
    rows = first["data"] + second["data"]
    assert len({r["id"] for r in rows}) == 6
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    assert {r["endpoint"] for r in rows} == {"chat.completions"}
    assert all(r["latency_ms"] > 0 and r["edge_instance"] for r in rows)
    assert all(r["id"].startswith("req_") for r in rows)

    bad = gateway.admin("GET", "/ai/usage/requests", params={"before": "!!nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "before"
    window = gateway.admin(
        "GET", "/ai/usage/summary", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    )
    assert window.status_code == 400


def test_a_user_key_sees_only_its_own_usage(gateway: Gateway) -> None:
    key = gateway.new_user_key("leo")
    gateway.client(key).chat.completions.create(model="echo/l", messages=MESSAGES)
    wait_until(lambda: gateway.usage("leo")["total_requests"] == 1, what="leo's event")
    for path in ("/ai/usage/summary", "/ai/usage/requests", "/ai/usage/timeseries"):
        resp = gateway.admin("GET", path, key=key, params={"user": "judy"})
        assert resp.status_code == 200, (path, resp.text)
        body = resp.json()
        if path.endswith("summary"):
            assert [u["user"] for u in body["by_user"]] == ["leo"]
        elif path.endswith("requests"):
            assert {r["user"] for r in body["data"]} == {"leo"}
        else:
            assert sum(p["requests"] for p in body["data"]) == 1
    assert gateway.admin("GET", "/ai/usage/status", key=key).status_code == 403


def test_poison_messages_go_to_the_dead_letter_subject(gateway: Gateway) -> None:
    before = gateway.admin("GET", "/ai/usage/status").json()

    async def publish() -> None:
        bus = Bus(gateway.info.nats_url_for("edge"), "test-poison", service="edge")
        await bus.connect(deadline=10)
        try:
            await bus.publish_durable(subjects.USAGE_SUBJECT, b"{not json", msg_id="poison-1")
            await bus.publish_durable(subjects.USAGE_SUBJECT, b'{"event_id": 5}', msg_id="poison-2")
        finally:
            await bus.close()

    asyncio.run(publish())

    def dead_lettered() -> bool:
        status = gateway.admin("GET", "/ai/usage/status").json()
        return status["dead_letter_stream_messages"] >= before["dead_letter_stream_messages"] + 2

    wait_until(dead_lettered, what="two dead letters")
    status = gateway.admin("GET", "/ai/usage/status").json()
    assert status["clickhouse"] is True
    assert status["pending"] == 0
