"""Budgets that survive restarts and crashes, and limits with the bus away, on a stack of
their own (it is restarted whole): spend kept across a restart of every service, a lost
counter reopened from the metered spend, a crashed edge's reservation released when its lease
expires, and an edge that keeps enforcing with its leased quota and fails closed after it."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from shared.limits import BUDGET_BUCKET, budget_key, period_at
from stack.launcher import Stack
from stack.settings import StackSettings
from tests.conftest import launch, stack_environ, wait_until
from tests.simulators.openai_sim import OpenAISimulator

MESSAGES = [{"role": "user", "content": "hi"}]
ENV = {"GATEWAY_LIMITS_LEASE_SECONDS": "3", "GATEWAY_BUDGET_RECONCILE_SECONDS": "1"}


def _start(data_dir: Path, sim: OpenAISimulator) -> Stack:
    settings = StackSettings(GATEWAY_DATA_DIR=data_dir, GATEWAY_PORT=0, GATEWAY_EDGE_WORKERS=1)
    return launch(settings, stack_environ(sim, **ENV))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits-restart")


@pytest.fixture(scope="module")
def stack(data_dir: Path, sim: OpenAISimulator) -> Iterator[Stack]:
    started = _start(data_dir, sim)
    yield started
    started.stop()


def _admin(stack: Stack, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
    assert stack.info is not None
    origin = stack.info.base_url.removesuffix("/v1")
    headers = {"authorization": f"Bearer {key or stack.info.admin_key}"}
    return httpx.request(method, origin + path, headers=headers, timeout=30, **kw)


def _chat(stack: Stack, key: str, model: str = "gpt-4o-mini", origin: str | None = None) -> httpx.Response:
    assert stack.info is not None
    base = origin or stack.info.base_url.removesuffix("/v1")
    body = {"model": model, "messages": MESSAGES, "max_tokens": 100}
    return httpx.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body, timeout=30)


def _budget(stack: Stack, key_id: str) -> dict[str, Any]:
    return dict(_admin(stack, "GET", f"/ai/keys/{key_id}").json()["budget"])


def _metered_cost(stack: Stack, user: str, requests: int) -> float:
    def stored() -> bool:
        resp = _admin(stack, "GET", "/ai/usage/summary", params={"period": "24h", "user": user})
        return resp.status_code == 200 and resp.json()["total_requests"] >= requests

    wait_until(stored, timeout=60, what=f"{requests} requests of {user} metered")
    resp = _admin(stack, "GET", "/ai/usage/summary", params={"period": "24h", "user": user})
    return float(resp.json()["total_cost_usd"])


def test_spend_survives_a_restart_and_a_lost_counter(stack: Stack, data_dir: Path, sim: OpenAISimulator) -> None:
    made = _admin(stack, "POST", "/ai/keys", json={"user": "restart-budget", "budget_usd": 0.01}).json()
    key, key_id = made["key"], made["id"]
    for _ in range(5):
        resp = _chat(stack, key)
        assert resp.status_code == 200, resp.text
    spent = _metered_cost(stack, "restart-budget", 5)
    assert spent > 0
    wait_until(lambda: abs(_budget(stack, key_id)["spent_usd"] - spent) < 1e-12, what="the counter to hold the spend")

    # Every service restarts (the counter is in NATS's file store): the spend is kept.
    stack.stop()
    restarted = _start(data_dir, sim)
    try:
        assert restarted.info is not None
        after = _budget(restarted, key_id)
        assert after["spent_usd"] == pytest.approx(spent, abs=1e-12)
        assert after["period"] == "month" and after["resets_at"] is not None

        # The counter itself is lost: the metered spend (ClickHouse) is the truth it comes back from.
        asyncio.run(_delete_counter(restarted, key_id))
        assert _budget(restarted, key_id)["spent_usd"] == pytest.approx(spent, abs=1e-12)
        assert _chat(restarted, key).status_code == 200  # opens the counter from the metered spend
        total = _metered_cost(restarted, "restart-budget", 6)
        wait_until(lambda: abs(_budget(restarted, key_id)["spent_usd"] - total) < 1e-12, what="spend after reopening")
    finally:
        restarted.stop()
        stack.start()  # the module's stack again, for the next tests


async def _delete_counter(stack: Stack, key_id: str) -> None:
    assert stack.info is not None
    nc = await nats.connect(stack.info.nats_url_for("admin"))
    try:
        kv = await nc.jetstream().key_value(BUDGET_BUCKET)
        await kv.delete(budget_key("key", key_id, period_at("month", time.time())))
    finally:
        await nc.close()


def test_a_crashed_edges_reservation_is_released(stack: Stack, sim: OpenAISimulator) -> None:
    made = _admin(stack, "POST", "/ai/keys", json={"user": "restart-crash", "budget_usd": 0.01}).json()
    key, key_id = made["key"], made["id"]
    origin = stack.add_edge("edge-crash")
    model = "gpt-4o-mini"  # priced, so it reserves; held open by the simulator in this test only
    sim.state.hold_models.add(model)
    try:
        cut: list[Exception] = []

        def call() -> None:
            try:
                _chat(stack, key, model, origin)
            except httpx.HTTPError as exc:  # the edge dies under it
                cut.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        wait_until(lambda: sim.state.in_flight.get(model, 0) >= 1, what="the request in flight")
        assert _budget(stack, key_id)["reserved_usd"] > 0
        stack.supervisor.stop("edge-crash", signal.SIGKILL)
        caller.join(timeout=30)
        assert cut, "the request should have been cut with its edge"
    finally:
        sim.state.hold_models.discard(model)
    wait_until(lambda: _budget(stack, key_id)["reserved_usd"] == 0, what="the dead edge's lease to expire")
    assert _budget(stack, key_id)["remaining_usd"] == pytest.approx(0.01 - _budget(stack, key_id)["spent_usd"])


def test_with_the_bus_away_an_edge_enforces_its_lease_then_fails_closed(stack: Stack) -> None:
    key = _admin(stack, "POST", "/ai/keys", json={"user": "restart-outage", "rpm": 40}).json()["key"]
    assert _chat(stack, key).status_code == 200  # leases 10 of the 40
    stack.supervisor.stop("nats")
    try:
        codes = []
        for _ in range(12):
            resp = _chat(stack, key)
            codes.append(resp.status_code)
            if resp.status_code != 200:
                break
        assert codes[-1] == 503, codes
        assert len(codes) - 1 <= 9  # at most what was left of its lease
        error = resp.json()["error"]
        assert error["code"] == "limits_unavailable"
        assert resp.headers["x-ratelimit-limit-requests"] == "40"
    finally:
        stack.supervisor.start("nats")
    assert stack.info is not None
    wait_until(lambda: _chat(stack, key).status_code == 200, timeout=60, what="limits back with the bus")
