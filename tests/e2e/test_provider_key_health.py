"""Several keys per provider: a refused key is marked invalid and skipped, a rate-limited key
cools down, requests go on with the other keys; admins disable and re-enable keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import PROVIDER_KEY, Gateway, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


def _keys(gateway: Gateway) -> dict[str, dict]:  # type: ignore[type-arg]
    return {k["id"]: k for k in gateway.admin("GET", "/ai/providers/keys").json()["data"]}


def _auth_headers(gateway: Gateway, start: int) -> list[str]:
    return [r.headers.get("Authorization", "") for r in gateway.sim.state.requests[start:]]


@pytest.fixture()
def extra_keys(gateway: Gateway) -> Iterator[list[str]]:
    """Provider keys a test adds, removed again after it, waiting until the edge forgot them."""
    added: list[str] = []
    yield added
    for key_id in added:
        gateway.admin("DELETE", f"/ai/providers/keys/{key_id}")

    def only_env_key() -> bool:
        start = len(gateway.sim.state.requests)
        for _ in range(4):
            gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
        return set(_auth_headers(gateway, start)) == {f"Bearer {PROVIDER_KEY}"}

    wait_until(only_env_key, what="the edge to forget the test's keys")


def _add(gateway: Gateway, added: list[str], secret: str, label: str) -> str:
    resp = gateway.admin("POST", "/ai/providers/keys", json={"provider": "openai", "api_key": secret, "label": label})
    assert resp.status_code == 201, resp.text
    added.append(resp.json()["id"])
    return str(resp.json()["id"])


def _until_used(gateway: Gateway, secret: str) -> None:
    def used() -> bool:
        start = len(gateway.sim.state.requests)
        gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
        return f"Bearer {secret}" in _auth_headers(gateway, start)

    wait_until(used, what="the edge to use the new key")


def test_a_refused_key_is_marked_invalid_and_requests_go_on(gateway: Gateway, extra_keys: list[str]) -> None:
    bad = _add(gateway, extra_keys, "sk-invalid-revoked-upstream", "revoked")
    _until_used(gateway, "sk-invalid-revoked-upstream")  # that request still succeeded, on the good key
    wait_until(lambda: _keys(gateway)[bad]["status"] == "invalid", what="the key to be marked invalid")
    assert "401" in _keys(gateway)[bad]["status_reason"]

    start = len(gateway.sim.state.requests)
    for _ in range(10):
        assert gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content
    assert "Bearer sk-invalid-revoked-upstream" not in _auth_headers(gateway, start)

    # An admin can disable a key and enable it again (which also clears "invalid").
    resp = gateway.admin("PATCH", f"/ai/providers/keys/{bad}", json={"status": "disabled"})
    assert resp.status_code == 200 and resp.json()["status"] == "disabled"
    assert gateway.admin("PATCH", f"/ai/providers/keys/{bad}", json={"status": "broken"}).status_code == 400
    assert gateway.admin("PATCH", "/ai/providers/keys/pk_nope", json={"status": "active"}).status_code == 404
    # The good key's listing shows when it last served a request.
    good = [k for k in _keys(gateway).values() if k["source"] == "env" and k["provider"] == "openai"]
    wait_until(lambda: _keys(gateway)[good[0]["id"]]["last_used_at"] is not None, what="last_used_at")


def test_a_rate_limited_key_cools_down(gateway: Gateway, extra_keys: list[str]) -> None:
    _add(gateway, extra_keys, "sk-ratelimited-busy", "busy")
    _until_used(gateway, "sk-ratelimited-busy")
    start = len(gateway.sim.state.requests)
    for _ in range(10):
        assert gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content
    # The simulator's retry-after is 7 s: within it, the busy key is not tried again.
    assert "Bearer sk-ratelimited-busy" not in _auth_headers(gateway, start)


def test_usage_events_carry_the_key_that_served(gateway: Gateway) -> None:
    key = gateway.new_user_key("rita")
    gateway.client(key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    wait_until(lambda: gateway.requests_metered("rita") == 1, what="the event")
    row = gateway.admin("GET", "/ai/usage/requests", params={"user": "rita"}).json()["data"][0]
    env_key = next(k for k in _keys(gateway).values() if k["source"] == "env" and k["provider"] == "openai")
    assert row["provider_key_id"] == env_key["id"]
