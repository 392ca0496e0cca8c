"""keyvault in production mode: AppRole login with the least-privilege policy from
deploy/keyvault-policy.hcl, token renewal and re-login past the token's maximum lifetime,
tested against the stack's real OpenBao, as a second keyvault replica in the queue group."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import hvac

from tests.conftest import Gateway, wait_until

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "keyvault-policy.hcl"


def test_keyvault_replica_on_approle_keeps_working_past_token_max_ttl(gateway: Gateway) -> None:
    root = hvac.Client(url=gateway.info.vault_addr, token=gateway.stack.vault_token)
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy("switchyard-keyvault", POLICY.read_text())
    # Short lifetimes so the test sees renewals and a fresh login: 2 s tokens, 5 s at most.
    root.auth.approle.create_or_update_approle(
        "switchyard-keyvault", token_policies=["switchyard-keyvault"], token_ttl="2s", token_max_ttl="5s"
    )
    role_id = root.auth.approle.read_role_id("switchyard-keyvault")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("switchyard-keyvault")["data"]["secret_id"]

    gateway.stack.add_replica(
        "keyvault",
        "keyvault-approle",
        {"VAULT_TOKEN": None, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id},
    )
    log = gateway.info.data_dir / "logs" / "keyvault-approle.log"
    try:
        wait_until(lambda: log.exists() and "Vault ready" in log.read_text(), what="the AppRole replica")
        # Both replicas answer from the queue group; past 5 s every call still works.
        deadline = time.monotonic() + 8
        calls = 0
        while time.monotonic() < deadline or calls < 8:  # past the 5 s max TTL, however slow the calls
            resp = gateway.admin("GET", "/ai/providers/keys")
            assert resp.status_code == 200, resp.text
            created = gateway.admin(
                "POST",
                "/ai/providers/keys",
                json={"provider": "fireworks", "api_key": f"fw-{calls}", "label": f"l{calls}"},
            )
            assert created.status_code == 201, created.text
            assert gateway.admin("DELETE", f"/ai/providers/keys/{created.json()['id']}").status_code == 200
            calls += 1
            time.sleep(0.5)
        assert calls >= 8
        served = [
            datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for line in log.read_text().splitlines()
            if any(m in line for m in ("stored provider key", "deleted provider key", "delivered"))
        ]
        ready = next(
            datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for line in log.read_text().splitlines()
            if "Vault ready" in line
        )
        # The replica served requests (each a Vault call) after its first token's maximum
        # lifetime (5 s) had passed; the queue group shares the calls between the replicas.
        assert any(t - ready > 5.5 for t in served), served
        assert "token renewal failed" not in log.read_text()
        assert "AppRole login refused" not in log.read_text()
    finally:
        gateway.stack.supervisor.stop("keyvault-approle")
