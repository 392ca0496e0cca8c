"""SIGTERM drains every bus service: /readyz and /healthz on its own port while it runs, then a
clean exit (code 0) with nothing left in flight; the stack serves again once it is back."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.conftest import Gateway, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return 0


@pytest.mark.parametrize("service", ["router", "keyvault"])
def test_a_replica_serves_health_and_exits_0_on_sigterm(gateway: Gateway, service: str) -> None:
    name = f"{service}-drain"
    gateway.stack.add_replica(service, name, {})
    port = gateway.stack.supervisor.children[name].spec.env[
        {"router": "GATEWAY_ROUTER_PORT", "keyvault": "GATEWAY_KEYVAULT_PORT"}[service]
    ]
    origin = f"http://127.0.0.1:{port}"
    ready: list[httpx.Response] = []

    def answered_ready() -> bool:
        try:
            resp = httpx.get(origin + "/readyz", timeout=3)
        except httpx.HTTPError:
            return False
        ready.append(resp)
        return resp.status_code == 200

    wait_until(answered_ready, what=f"{name} to be ready")
    # The answer that said ready, not a second one: on a loaded machine a check may be slow
    # (Vault's health within 2 s) a moment later, which is the probe's business, not this test's.
    body = ready[-1].json()
    assert body["service"] == service and all(body["checks"].values())
    assert httpx.get(origin + "/healthz").json() == {"status": "ok", "service": service}
    assert gateway.stack.supervisor.stop(name, signal.SIGTERM) == 0
    assert _status(origin + "/healthz") == 0  # gone, its port closed
    # The other replica answers alone.
    assert gateway.admin("GET", "/ai/providers/keys").status_code == 200


def test_metering_drains_and_comes_back_with_nothing_lost(gateway: Gateway) -> None:
    key = gateway.new_user_key("drain-dora")
    client = gateway.client(key)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    health = gateway.info.health["metering"]
    assert gateway.stack.supervisor.stop("metering", signal.SIGTERM) == 0
    assert _status(health + "/readyz") == 0
    # While metering is away requests still succeed; their events wait in JetStream.
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    gateway.stack.supervisor.start("metering")
    wait_until(lambda: _status(health + "/readyz") == 200, timeout=120, what="metering to be ready again")
    wait_until(lambda: gateway.requests_metered("drain-dora") == 5, timeout=60, what="all five requests metered")
