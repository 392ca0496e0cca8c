"""Metering: every request counted exactly once, including across a metering outage."""

from __future__ import annotations

import secrets
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import Gateway, wait_until
from tests.simulators.openai_sim import PROMPT_TOKENS, REPLY

MESSAGES = [{"role": "user", "content": "count me"}]
COMPLETION = len(REPLY.split())


def _waiting(gateway: Gateway) -> int:
    """Events in the usage stream not yet stored and acknowledged (a redelivery among them)."""
    resp = gateway.admin("GET", "/ai/usage/status")
    return int(resp.json()["usage_stream_messages"]) if resp.status_code == 200 else -1


def _settled(gateway: Gateway, user: str, requests: int) -> dict:
    """The user's usage once every event is stored and none is left to be delivered again: a
    double count would be in by then, so the numbers are final."""
    wait_until(
        lambda: gateway.requests_metered(user) >= requests and _waiting(gateway) == 0,
        timeout=60,
        what=f"{requests} events for {user}, and nothing left in the stream",
    )
    return gateway.usage(user)


def test_usage_summary_counts_exactly_what_was_sent(gateway: Gateway) -> None:
    key = gateway.new_user_key("erin")
    client = gateway.client(key)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    for _ in range(2):
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    client.chat.completions.create(model="echo/m", messages=[{"role": "user", "content": "one two three"}])

    summary = _settled(gateway, "erin", 6)
    assert summary["total_requests"] == 6
    assert summary["prompt_tokens"] == 5 * PROMPT_TOKENS + 3
    assert summary["completion_tokens"] == 5 * COMPLETION + 3
    assert summary["total_tokens"] == summary["prompt_tokens"] + summary["completion_tokens"]
    by_model = {m["model"]: m for m in summary["by_model"]}
    assert by_model["gpt-4o"]["requests"] == 5
    assert by_model["m"]["requests"] == 1  # pinned: the model as the provider knows it
    # Priced from the catalog: gpt-4o is $2.50 / $10 per 1M tokens, cached input $1.25.
    per_request = ((PROMPT_TOKENS - 3) * 2.5 + 3 * 1.25 + COMPLETION * 10.0) / 1_000_000
    assert abs(by_model["gpt-4o"]["cost_usd"] - 5 * per_request) < 1e-12
    assert abs(summary["total_cost_usd"] - 5 * per_request) < 1e-12
    assert {p["provider"]: p["requests"] for p in summary["by_provider"]} == {"openai": 5, "echo": 1}
    assert [u["user"] for u in summary["by_user"]] == ["erin"]
    # Stored events leave the JetStream work queue: it holds only what is not in ClickHouse yet.
    wait_until(
        lambda: gateway.admin("GET", "/ai/usage/status").json()["usage_stream_messages"] == 0,
        what="the usage stream to drain",
    )


def test_failed_requests_are_metered_too(gateway: Gateway) -> None:
    key = gateway.new_user_key("frank")
    client = gateway.client(key, timeout=10)
    for model in ("gpt-sim-status-500", "no-such-model"):
        try:
            client.chat.completions.create(model=model, messages=MESSAGES)
        except Exception:
            pass
    summary = _settled(gateway, "frank", 2)
    assert summary["total_requests"] == 2
    assert summary["total_tokens"] == 0


def test_metering_outage_loses_and_doubles_nothing(gateway: Gateway) -> None:
    key = gateway.new_user_key("grace")
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    _settled(gateway, "grace", 1)

    gateway.stack.supervisor.stop("metering")
    try:
        # /readyz reports the missing service ...
        wait_until(lambda: httpx.get(gateway.origin + "/readyz").status_code == 503, what="readyz 503")
        assert httpx.get(gateway.origin + "/readyz").json()["checks"]["metering"] is False
        # ... while requests keep flowing: chat does not depend on metering.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: client.chat.completions.create(model="gpt-4o", messages=MESSAGES), range(20)))
    finally:
        gateway.stack.supervisor.start("metering")
    wait_until(lambda: httpx.get(gateway.origin + "/readyz").status_code == 200, timeout=60, what="readyz 200")

    summary = _settled(gateway, "grace", 21)
    assert summary["total_requests"] == 21
    assert summary["prompt_tokens"] == 21 * PROMPT_TOKENS
    assert summary["completion_tokens"] == 21 * COMPLETION


def test_readyz_and_healthz(gateway: Gateway) -> None:
    assert httpx.get(gateway.origin + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.origin + "/readyz")
    assert ready.status_code == 200
    assert all(ready.json()["checks"].values())


def _traffic(gateway: Gateway, client, n: int, during) -> None:  # type: ignore[no-untyped-def]
    """Send n requests from four threads, running ``during()`` once a few have been answered."""
    answered = len(gateway.sim.state.requests)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client.chat.completions.create, model="gpt-4o", messages=MESSAGES) for _ in range(n)]
        wait_until(lambda: len(gateway.sim.state.requests) >= answered + 8, what="the traffic to be under way")
        during()
        for f in futures:
            f.result()


def test_metering_killed_mid_batch_counts_exactly_once(gateway: Gateway) -> None:
    key = gateway.new_user_key("oscar")
    client = gateway.client(key)
    n = 60

    def kill_and_restart() -> None:
        gateway.stack.supervisor.stop("metering", signal.SIGKILL)  # returns once it is gone
        gateway.stack.supervisor.start("metering")

    _traffic(gateway, client, n, kill_and_restart)
    summary = _settled(gateway, "oscar", n)
    assert summary["total_requests"] == n
    assert summary["prompt_tokens"] == n * PROMPT_TOKENS
    assert summary["completion_tokens"] == n * COMPLETION
    rows = gateway.admin("GET", "/ai/usage/requests", params={"user": "oscar", "limit": 1000}).json()["data"]
    assert len(rows) == len({r["id"] for r in rows}) == n


def test_nats_outage_spools_and_replays_exactly_once(gateway: Gateway) -> None:
    key = gateway.new_user_key("peggy")
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    _settled(gateway, "peggy", 1)

    gateway.stack.supervisor.stop("nats")
    try:
        wait_until(lambda: httpx.get(gateway.origin + "/readyz").status_code == 503, what="readyz 503")
        # The hot path needs no NATS: keys, routes and provider keys are in the edge's memory.
        for _ in range(15):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        spool = gateway.info.data_dir / "spool"
        wait_until(lambda: any(spool.glob("usage-*")), what="events spooled to disk")
    finally:
        gateway.stack.supervisor.start("nats")
    wait_until(lambda: httpx.get(gateway.origin + "/readyz").status_code == 200, timeout=60, what="readyz 200")

    summary = _settled(gateway, "peggy", 17)
    assert summary["total_requests"] == 17
    assert summary["prompt_tokens"] == 17 * PROMPT_TOKENS
    assert summary["completion_tokens"] == 17 * COMPLETION
    wait_until(lambda: not any((gateway.info.data_dir / "spool").glob("usage-*")), what="spool drained")


def _readyz(origin: str) -> tuple[int, dict]:
    try:
        resp = httpx.get(origin + "/readyz", timeout=5)
    except httpx.HTTPError:
        return -1, {}
    return resp.status_code, resp.json()


def test_a_second_metering_is_a_standby_that_takes_over_when_the_first_is_killed(gateway: Gateway) -> None:
    """The embedded engine can be opened by one process: a second metering on the machine
    waits as a standby (never ready; it used to say 200, then die), and takes over when the
    holder is SIGKILLed under load; the first, restarted, is the standby in turn. Every request
    is stored once through both take-overs."""
    assert gateway.stack.info is not None
    first = gateway.stack.info.health["metering"]
    second = gateway.stack.add_replica("metering", "metering-standby", {})
    user = "standby-" + secrets.token_hex(3)
    client = gateway.client(gateway.new_user_key(user))
    n = 60
    try:
        wait_until(lambda: _readyz(second)[1].get("status") == "standby", what="the second metering to wait")
        status, body = _readyz(second)
        assert status == 503 and "held by process" in body["standby"]
        assert _readyz(first)[0] == 200

        _traffic(gateway, client, n, lambda: gateway.stack.supervisor.stop("metering", signal.SIGKILL))
        wait_until(lambda: _readyz(second)[0] == 200, timeout=60, what="the standby to take over")
        gateway.stack.supervisor.start("metering")
        wait_until(lambda: _readyz(first)[1].get("status") == "standby", what="the restarted one to wait")

        _traffic(gateway, client, n, lambda: gateway.stack.supervisor.stop("metering-standby", signal.SIGKILL))
        wait_until(lambda: _readyz(first)[0] == 200, timeout=60, what="the first to take over again")
    finally:
        gateway.stack.supervisor.stop("metering-standby")
        gateway.stack.supervisor.start("metering")
    summary = _settled(gateway, user, 2 * n)
    assert summary["total_requests"] == 2 * n
    assert summary["prompt_tokens"] == 2 * n * PROMPT_TOKENS
    assert summary["completion_tokens"] == 2 * n * COMPLETION
    rows = gateway.admin("GET", "/ai/usage/requests", params={"user": user, "limit": 1000}).json()["data"]
    assert len(rows) == len({r["id"] for r in rows}) == 2 * n
