"""Keyvault's start on real NATS and a real OpenBao: once Vault is ready it tells the edges, so
an edge that asked for provider keys while keyvault was starting (``make up`` starts keyvault
last, once OpenBao is unsealed) fetches them at once rather than at its next retry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.keyvault.app import Keyvault
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.vault import Vault
from shared import subjects
from shared.bus import Bus
from shared.catalog import load_catalog
from tests.servers import NatsServer, VaultServer


def test_keyvault_announces_when_vault_is_ready_even_with_nothing_to_import(
    tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for provider in load_catalog().providers.values():
        if provider.key_env:
            monkeypatch.delenv(provider.key_env, raising=False)  # nothing to import
    vault = VaultServer(tmp_path / "vault")
    vault.start()

    async def run() -> None:
        edge = Bus(nats_server.url, "edge-under-test")
        await edge.connect(deadline=10)
        announced = asyncio.Event()

        async def changed(_: object) -> None:
            announced.set()

        await edge.subscribe(subjects.PROVIDER_KEYS_CHANGED, changed)
        await edge.nc.flush()

        settings = KeyvaultSettings(
            GATEWAY_NATS_URL=nats_server.url,
            VAULT_ADDR=vault.addr,
            VAULT_TOKEN=vault.token,
            GATEWAY_KEYVAULT_PORT=0,
            GATEWAY_EDGE_IDENTITIES_DIR=tmp_path,
        )
        bus = Bus.for_service(settings, "keyvault")
        await bus.connect(deadline=10)
        store = Vault(
            vault.addr,
            vault.token,
            transit_mount=settings.vault_transit_mount,
            transit_key=settings.vault_transit_key,
            kv_mount=settings.vault_kv_mount,
        )
        service = Keyvault(settings, bus, store)
        stop = asyncio.Event()
        try:
            await service.start()
            await service.prepare_vault(stop)
            assert service.transport is not None
            await asyncio.wait_for(announced.wait(), 30)
        finally:
            await service.stop()
            await bus.close(2)
            await edge.close()

    try:
        asyncio.run(run())
    finally:
        vault.stop()
