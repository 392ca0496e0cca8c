"""Every admin action and every provider-key decryption is an audit event in ClickHouse."""

from __future__ import annotations

import httpx

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
    # The identity keyvault verified (the launcher's `local`), then the instance it names itself.
    assert decrypt["actor"].startswith("keyvault-") and decrypt["source"].startswith("local/edge-")
    assert secret not in str(_audit(gateway))
    assert gateway.admin("GET", "/ai/audit", key=user_key).status_code == 403
    gateway.admin("DELETE", f"/ai/providers/keys/{key_id}")


def test_what_a_client_sends_cannot_forge_or_flood_the_audit_log(gateway: Gateway) -> None:
    """The source is the peer's address unless the peer is a configured proxy (none here), and a
    path is stored as sent (escapes kept, no line breaks) and bounded."""
    marker = "forged-" + "x" * 5000
    resp = httpx.get(
        f"{gateway.origin}/ai/{marker}%0aINJECTED",
        headers={"x-forwarded-for": "6.6.6.6", "authorization": "Bearer sk-sy-wrong"},
        timeout=30,
    )
    assert resp.status_code in (401, 404)
    httpx.get(f"{gateway.origin}/ai/forged-short%0aINJECTED", timeout=30)

    def stored() -> list[dict]:  # type: ignore[type-arg]
        return [e for e in _audit(gateway, actor="anonymous") if "forged-" in e["action"]]

    wait_until(lambda: len(stored()) == 2, timeout=30, what="the anonymous calls' audit events")
    short = next(e for e in stored() if "forged-short" in e["action"])
    assert short["action"] == "GET /ai/forged-short%0aINJECTED"  # the escape as sent, not a line break
    event = next(e for e in stored() if "forged-xxx" in e["action"])
    assert event["source"] == "127.0.0.1"  # not the X-Forwarded-For a client wrote
    assert len(event["action"]) <= len("GET ") + 512 + 3 and event["action"].endswith("...")
    assert "\n" not in event["action"] and event["action"].startswith("GET /ai/forged-xxx")
