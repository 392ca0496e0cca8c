"""Keyvault's start on real NATS and a real OpenBao: once Vault is ready it tells the edges, so
an edge that asked for provider keys while keyvault was starting (``make up`` starts keyvault
last, once OpenBao is unsealed) fetches them at once rather than at its next retry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared import subjects
from shared.bus import Bus
from shared.catalog import load_catalog
from tests.servers import NatsServer, VaultServer, keyvault_service


def test_keyvault_announces_when_vault_is_ready_even_with_nothing_to_import(
    tmp_path: Path, nats_server: NatsServer, vault_server: VaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for provider in load_catalog().providers.values():
        if provider.key_env:
            monkeypatch.delenv(provider.key_env, raising=False)  # nothing to import
    vault = vault_server

    async def run() -> None:
        edge = Bus(nats_server.url, "edge-under-test")
        await edge.connect(deadline=10)
        announced = asyncio.Event()

        async def changed(_: object) -> None:
            announced.set()

        await edge.subscribe(subjects.PROVIDER_KEYS_CHANGED, changed)
        await edge.nc.flush()

        service = await keyvault_service(nats_server.url, vault, tmp_path)
        bus = service.bus
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

    asyncio.run(run())


def test_keyvaults_starting_together_agree_on_their_shared_keys(
    tmp_path: Path, nats_server: NatsServer, vault_server: VaultServer
) -> None:
    """The transport and responses keys are made by whichever keyvault starts first; one that
    starts at the same moment must end up with the same keys, not its own (KV check-and-set)."""
    vault = vault_server

    async def run() -> None:
        replicas = [await keyvault_service(nats_server.url, vault, tmp_path) for _ in range(3)]
        try:
            await replicas[0].vault.ensure_engines()
            assert await replicas[0].vault.get_or_create("race/x", lambda: {"v": "first"}) == {"v": "first"}
            # Written already: the second maker's value is not written, the first is read back.
            assert await replicas[1].vault.get_or_create("race/x", lambda: {"v": "second"}) == {"v": "first"}
            assert await replicas[2].vault.get("race/x") == {"v": "first"}

            # Another replica writes between this one's read and its write: its value stands.
            other = replicas[1].vault

            def make_while_another_writes() -> dict[str, str]:
                other._client.secrets.kv.v2.create_or_update_secret(
                    path="race/y", secret={"v": "other"}, mount_point=other.kv_mount
                )
                return {"v": "mine"}

            assert await replicas[0].vault.get_or_create("race/y", make_while_another_writes) == {"v": "other"}
            keys = await asyncio.gather(*(r._responses_key() for r in replicas))
            transports = await asyncio.gather(*(r._transport_key() for r in replicas))
            assert len(set(keys)) == 1 and len(keys[0]) == 32
            assert len({t.public_key_b64 for t in transports}) == 1
        finally:
            for replica in replicas:
                await replica.bus.close()

    asyncio.run(run())
