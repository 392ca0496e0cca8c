"""Every admin action and every provider-key decryption is an audit event in ClickHouse."""

from __future__ import annotations

from tests.conftest import Gateway, wait_until


def _audit(gateway: Gateway, **params: object) -> list[dict]:  # type: ignore[type-arg]
    resp = gateway.admin("GET", "/ai/audit", params={"limit": 1000, **params})
    return list(resp.json()["data"]) if resp.status_code == 200 else []


def test_admin_actions_and_decryptions_are_audited(gateway: Gateway) -> None:
    user_key = gateway.new_user_key("sam")
    secret = "sk-audit-secret-never-logged-42"
    created = gateway.admin(
        "POST", "/ai/providers/keys", json={"provider": "together", "api_key": secret, "label": "audit"}
    )
    assert created.status_code == 201
    key_id = created.json()["id"]
    assert gateway.admin("GET", "/ai/providers/keys", key=user_key).status_code == 403

    def recorded() -> bool:
        # This test's own events: another test's user key may have been refused the same call.
        actions = {(e["action"], e["status"], e["actor_user"]) for e in _audit(gateway)}
        decrypted = {e["target"] for e in _audit(gateway, action="provider_key.decrypt")}
        return (
            any((action, status) == ("POST /ai/providers/keys", 201) for action, status, _ in actions)
            and ("GET /ai/providers/keys", 403, "sam") in actions
            and key_id in decrypted
        )

    wait_until(recorded, timeout=30, what="the audit events")
    events = _audit(gateway)
    create = next(e for e in events if e["action"] == "POST /ai/providers/keys" and e["status"] == 201)
    assert create["actor"] == "admin" and create["source"] == "127.0.0.1" and create["ts"] > 0
    denied = next(
        e for e in events if e["action"] == "GET /ai/providers/keys" and e["status"] == 403 and e["actor_user"] == "sam"
    )
    assert denied["actor"].startswith("key_")
    decrypt = next(e for e in _audit(gateway, action="provider_key.decrypt") if e["target"] == key_id)
    assert decrypt["actor"].startswith("keyvault-") and decrypt["source"].startswith("edge-")
    assert secret not in str(_audit(gateway))
    assert gateway.admin("GET", "/ai/audit", key=user_key).status_code == 403
    gateway.admin("DELETE", f"/ai/providers/keys/{key_id}")
