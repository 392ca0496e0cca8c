"""The hot path's contract, checked by counting, not timing: a request's only network call
is the upstream one. The edge talks to NATS at most once per request, to hand over its usage
event (events of the same few milliseconds go as one message), and never asks keyvault, the
router or metering anything; it has no Vault or ClickHouse client at all
(tests/unit/test_deploy.py checks its dependencies). Off the request path it sends one health
report a second to the router (its heartbeat); those are allowed for."""

from __future__ import annotations

import math
import time

import httpx

from tests.conftest import Gateway, wait_until

N = 40


def _edge_connections(gateway: Gateway) -> dict[str, dict]:  # type: ignore[type-arg]
    assert gateway.info.nats_monitor_url
    connz = httpx.get(gateway.info.nats_monitor_url + "/connz", params={"limit": 1024}).json()
    return {c["name"]: c for c in connz["connections"] if c.get("name", "").startswith("switchyard-edge-")}


def _stored(gateway: Gateway) -> int:
    return int(gateway.admin("GET", "/ai/usage/status").json()["inserted"])


def test_at_most_one_bus_message_per_request_and_no_service_calls(gateway: Gateway) -> None:
    client = gateway.client()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "warm"}])
    stored = _stored(gateway)
    wait_until(lambda: _stored(gateway) > stored, what="the warm-up request to be stored")
    stored = _stored(gateway)
    before = _edge_connections(gateway)
    started = time.monotonic()
    assert before, "the edge has no NATS connection"

    say = [{"role": "user", "content": "x"}]
    for i in range(N):
        if i % 2:
            client.chat.completions.create(model="gpt-4o", messages=say)
        else:
            list(client.chat.completions.create(model="echo/x", messages=say, stream=True))

    def sent() -> int:
        after = _edge_connections(gateway)
        # Messages the server received from the edge's connection(s): usage events only.
        return sum(after[name]["in_msgs"] - before[name]["in_msgs"] for name in before if name in after)

    # Every request's event reaches metering, and the edge sent no more than one message each.
    wait_until(lambda: _stored(gateway) - stored >= N, timeout=60, what="the usage events to be stored")
    total = sent()
    heartbeats = len(before) * (math.floor(time.monotonic() - started) + 1)  # one a second per edge
    assert 1 <= total <= N + heartbeats, (total, heartbeats)


def test_overhead_header_reports_gateway_time(gateway: Gateway) -> None:
    resp = httpx.post(
        gateway.info.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gateway.info.admin_key}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert resp.status_code == 200
    overhead = float(resp.headers["x-switchyard-overhead-ms"])
    assert 0.0 <= overhead < float(resp.elapsed.total_seconds() * 1000)
    assert resp.headers["x-request-id"].startswith("req_")
