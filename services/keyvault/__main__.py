"""``python -m services.keyvault``."""

from __future__ import annotations

import asyncio

from services.keyvault.app import Keyvault
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.vault import Vault
from shared.bus import Bus
from shared.runner import run_service


async def main(stop: asyncio.Event) -> None:
    settings = KeyvaultSettings()
    bus = Bus(settings.nats_url, "switchyard-keyvault")
    await bus.connect()
    vault = Vault(
        settings.vault_addr,
        settings.vault_token.get_secret_value(),
        transit_mount=settings.vault_transit_mount,
        transit_key=settings.vault_transit_key,
        kv_mount=settings.vault_kv_mount,
    )
    if settings.vault_role_id and settings.vault_secret_id and settings.vault_secret_id.get_secret_value():
        vault.use_approle(
            settings.vault_role_id, settings.vault_secret_id.get_secret_value(), settings.vault_approle_mount
        )
    service = Keyvault(settings, bus, vault)
    await service.start()
    await service.prepare_vault(stop)
    await service.keep_token_alive(stop)
    await stop.wait()
    await bus.close()


if __name__ == "__main__":
    run_service("keyvault", main)
