"""``python -m services.keyvault``."""

from __future__ import annotations

import asyncio

from services.keyvault.app import Keyvault
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.vault import Vault
from shared.bus import Bus
from shared.health import Health
from shared.heartbeat import start_heartbeat
from shared.runner import run_service


async def main(stop: asyncio.Event) -> None:
    settings = KeyvaultSettings()
    health = Health("keyvault", settings.host, settings.port, settings.metrics_token.get_secret_value())
    await health.start()
    bus = Bus.for_service(settings, "keyvault")
    await bus.connect()
    heartbeat = await start_heartbeat(bus, "keyvault", settings.heartbeat_seconds)
    vault = Vault(
        settings.vault_addr,
        settings.vault_token.get_secret_value(),
        transit_mount=settings.vault_transit_mount,
        transit_key=settings.vault_transit_key,
        kv_mount=settings.vault_kv_mount,
    )
    approle = settings.approle()
    if approle is not None:
        vault.use_approle(*approle, settings.vault_approle_mount)
    service = Keyvault(settings, bus, vault)
    await service.start()

    async def connected() -> bool:
        return bus.connected

    async def vault_ready() -> bool:
        return service.transport is not None and await vault.healthy()

    health.add_check("nats", connected)
    health.add_check("vault", vault_ready)
    try:
        await service.prepare_vault(stop)
        await asyncio.gather(service.keep_token_alive(stop), service.probe_refused_keys(stop))
        await stop.wait()
    finally:
        health.draining = True
        await service.stop()
        heartbeat.cancel()
        await bus.close(settings.drain_seconds)  # answers the requests in hand, takes no more
        await service.auditor.flush()
        await health.stop()


if __name__ == "__main__":
    run_service("keyvault", main)
