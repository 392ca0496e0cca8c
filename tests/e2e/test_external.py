"""GATEWAY_NATS_URL, VAULT_ADDR/VAULT_TOKEN and GATEWAY_CLICKHOUSE_DSN switch each part to
a server the operator runs: the launcher then starts none of its own."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import httpx

from stack.launcher import Stack
from stack.settings import StackSettings
from tests.conftest import Gateway, stack_environ
from tests.servers import NatsServer


def test_external_nats_vault_and_clickhouse(tmp_path: Path, gateway: Gateway) -> None:
    nats = NatsServer(tmp_path / "external-nats")
    nats.start()
    vault_token = gateway.stack.vault_token  # the session stack's OpenBao, external to this one
    dsn = f"chdb://{tmp_path / 'external-clickhouse'}"
    settings = StackSettings(
        GATEWAY_DATA_DIR=tmp_path / "data",
        GATEWAY_PORT=0,
        GATEWAY_EDGE_WORKERS=1,
        GATEWAY_NATS_URL=nats.url,
        VAULT_ADDR=gateway.info.vault_addr,
        VAULT_TOKEN=vault_token,
        GATEWAY_CLICKHOUSE_DSN=dsn,
    )
    stack = Stack(settings, environ=stack_environ(gateway.sim))
    try:
        info = stack.start()
        assert set(stack.supervisor.children) == {"router", "keyvault", "metering", "edge"}
        assert info.nats_url == nats.url and info.vault_addr == gateway.info.vault_addr
        # Provider keys come from the external Vault: the OpenAI key stored there works.
        external = dataclasses.replace(gateway, stack=stack, info=info, _clients={})
        try:
            reply = external.client().chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content
        finally:
            external.close()
        assert (tmp_path / "external-clickhouse").is_dir()
        assert not (tmp_path / "data" / "clickhouse").exists()
        assert not (tmp_path / "data" / "nats").exists()
    finally:
        stack.stop()
        nats.stop()


def test_a_node_runs_only_the_services_it_is_given(tmp_path: Path, gateway: Gateway) -> None:
    """GATEWAY_SERVICES=router against the session stack's NATS, as its own NATS user: the
    launcher starts that service alone (no NATS, no Vault), and keeps no password on disk."""
    password = gateway.info.nats_users["router"]
    settings = StackSettings(
        GATEWAY_DATA_DIR=tmp_path / "router-node",
        GATEWAY_SERVICES="router",
        GATEWAY_NATS_URL=gateway.info.nats_url,
    )
    # The session stack's configuration: routers configured alike publish the same table.
    stack = Stack(settings, environ=dict(gateway.stack.environ, NATS_ROUTER_PASSWORD=password))
    try:
        info = stack.start()
        assert set(stack.supervisor.children) == {"router"}
        assert info.base_url == "" and set(info.health) == {"router"}
        ready = httpx.get(info.health["router"] + "/readyz").json()
        assert ready["checks"] == {"nats": True, "route_table": True}
        state = tmp_path / "router-node" / "stack.json"
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert password not in state.read_text()
        assert password not in stack.supervisor.children["router"].spec.log_file.read_text()
    finally:
        stack.stop()
