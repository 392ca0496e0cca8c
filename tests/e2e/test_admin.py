"""The admin API: provider keys in Vault, client keys as hashes, roles."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import PROVIDER_KEY, Gateway, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


def test_provider_keys_are_listed_without_secrets(gateway: Gateway) -> None:
    secret = "sk-mistral-test-secret-value-42"
    created = gateway.admin(
        "POST", "/ai/providers/keys", json={"provider": "mistral", "api_key": secret, "label": "team-a"}
    )
    assert created.status_code == 201, created.text
    info = created.json()
    assert info["provider"] == "mistral" and info["label"] == "team-a"
    assert secret not in created.text
    listing = gateway.admin("GET", "/ai/providers/keys")
    assert listing.status_code == 200
    assert secret not in listing.text and PROVIDER_KEY not in listing.text
    rows = {k["id"]: k for k in listing.json()["data"]}
    assert rows[info["id"]]["fingerprint"] == info["fingerprint"]
    # The key imported from OPENAI_API_KEY at start is there, marked as from the environment.
    assert any(k["provider"] == "openai" and k["source"] == "env" for k in rows.values())

    dup = gateway.admin(
        "POST", "/ai/providers/keys", json={"provider": "mistral", "api_key": "other", "label": "team-a"}
    )
    assert dup.status_code == 409 and dup.json()["error"]["param"] == "label"

    deleted = gateway.admin("DELETE", f"/ai/providers/keys/{info['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert info["id"] not in gateway.admin("GET", "/ai/providers/keys").text
    assert gateway.admin("DELETE", f"/ai/providers/keys/{info['id']}").status_code == 404


def test_provider_key_validation(gateway: Gateway) -> None:
    unknown = gateway.admin("POST", "/ai/providers/keys", json={"provider": "nope", "api_key": "x"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "provider"
    missing = gateway.admin("POST", "/ai/providers/keys", json={"provider": "openai"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "api_key"
    wrong = gateway.admin("POST", "/ai/providers/keys", content=b"not json")
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_json"


def test_new_provider_key_reaches_the_edge(gateway: Gateway) -> None:
    # xAI has no key in the test stack: 503 until one is added, then the edge uses it.
    with pytest.raises(openai.APIStatusError) as exc:
        gateway.client().chat.completions.create(model="grok-4", messages=MESSAGES)
    assert exc.value.status_code == 503
    created = gateway.admin(
        "POST", "/ai/providers/keys", json={"provider": "xai", "api_key": "xai-secret", "label": "x"}
    )
    assert created.status_code == 201
    try:
        # Its base URL is the real xAI address, unreachable here: the edge now gets past the
        # key and fails at the network (502), which proves it holds the new key.
        def has_key() -> bool:
            try:
                gateway.client().chat.completions.create(model="grok-4", messages=MESSAGES, timeout=10)
            except openai.APIStatusError as err:
                return err.status_code in (502, 504)
            except openai.APIConnectionError:
                return False
            return True

        wait_until(has_key, timeout=15, what="the edge to pick up the new provider key")
    finally:
        gateway.admin("DELETE", f"/ai/providers/keys/{created.json()['id']}")


def test_client_key_lifecycle_and_revocation(gateway: Gateway) -> None:
    created = gateway.admin("POST", "/ai/keys", json={"user": "carol", "name": "ci"})
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith("sk-sy-") and len(key) > 40
    assert body["user"] == "carol" and body["id"].startswith("key_")
    wait_until(lambda: gateway.admin("GET", "/v1/models", key=key).status_code == 200, what="key on the edge")
    reply = gateway.client(key).chat.completions.create(model="echo/e", messages=MESSAGES)
    assert reply.choices[0].message.content == "hi"

    listing = gateway.admin("GET", "/ai/keys", params={"user": "carol"})
    assert listing.status_code == 200
    assert key not in listing.text
    assert [k["id"] for k in listing.json()["data"]] == [body["id"]]

    revoked_at = time.monotonic()
    assert gateway.admin("DELETE", f"/ai/keys/{body['id']}").status_code == 200
    wait_until(lambda: gateway.admin("GET", "/v1/models", key=key).status_code == 401, timeout=1.0, what="revocation")
    assert time.monotonic() - revoked_at < 1.0
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(model="echo/e", messages=MESSAGES)
    assert gateway.admin("DELETE", f"/ai/keys/{body['id']}").status_code == 404


def test_user_keys_cannot_use_the_admin_api(gateway: Gateway) -> None:
    key = gateway.new_user_key("dave")
    other = gateway.admin("POST", "/ai/keys", json={"user": "admin-erin", "name": "hers"}).json()["id"]
    for method, path in [
        ("GET", "/ai/providers/keys"),
        ("POST", "/ai/keys"),
        ("PATCH", f"/ai/keys/{other}"),
        ("DELETE", f"/ai/keys/{other}"),
        ("GET", "/ai/projects"),
        ("POST", "/ai/projects"),
        ("GET", "/ai/models"),
    ]:
        body = {"user": "x"} if method == "POST" else {"description": "x"} if method == "PATCH" else None
        resp = gateway.admin(method, path, key=key, json=body)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["error"]["type"] == "permission_error"
    # A user key sees its own user's keys and nothing of other users', whatever it asks.
    mine = gateway.admin("GET", "/ai/keys", key=key, params={"user": "admin-erin"}).json()["data"]
    assert mine and {k["user"] for k in mine} == {"dave"}
    assert gateway.admin("GET", f"/ai/keys/{other}", key=key).status_code == 404
    assert gateway.admin("GET", f"/ai/keys/{mine[0]['id']}", key=key).json()["user"] == "dave"
    # A user key may read its own usage, and only its own.
    own = gateway.admin("GET", "/ai/usage/summary", key=key, params={"user": "someone-else"})
    assert own.status_code == 200
    assert {u["user"] for u in own.json()["by_user"]} <= {"dave"}


def test_catalog_lists_prices_and_capabilities(gateway: Gateway) -> None:
    resp = gateway.admin("GET", "/ai/models")
    assert resp.status_code == 200
    rows = {m["id"]: m for m in resp.json()["data"]}
    assert rows["gpt-4o"]["pricing"]["input"] == 2.5
    assert rows["gpt-4o"]["pricing"]["output"] == 10.0
    assert "tools" in rows["claude-sonnet-4-6"]["capabilities"]
    assert rows["gemini-2.5-flash"]["provider"] == "gemini"
    assert "gpt-4o-latest" in rows["gpt-4o"]["aliases"]


def test_usage_summary_rejects_unknown_period(gateway: Gateway) -> None:
    resp = gateway.admin("GET", "/ai/usage/summary", params={"period": "1y"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "period"
