"""The keyvault service: provider keys in Vault, client keys as hashes, over NATS."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from services.keyvault.client_keys import ClientKeyStore
from services.keyvault.provider_keys import ProviderKeyStore
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.vault import Vault, VaultUnavailable
from shared import subjects
from shared.audit import Auditor
from shared.bus import Bus
from shared.catalog import load_catalog, self_hosted_providers
from shared.errors import INVALID_REQUEST, UNAVAILABLE, GatewayError
from shared.messages import (
    PROVIDER_KEY_CREATE_CONTEXT,
    ById,
    ClientKeyCreate,
    ClientKeyCreated,
    ClientKeyInfo,
    ClientKeyList,
    Empty,
    EncryptionRotated,
    Ping,
    ProviderKeyCreate,
    ProviderKeyCreateSealed,
    ProviderKeyFetch,
    ProviderKeyInfo,
    ProviderKeyList,
    ProviderKeyStatusChange,
    SealedProviderKeys,
    TransportKey,
)
from shared.sealing import Recipient, SealingError

log = logging.getLogger("switchyard.keyvault")

_TRANSPORT_KEY_PATH = "keyvault/transport-key"


class Keyvault:
    def __init__(self, settings: KeyvaultSettings, bus: Bus, vault: Vault) -> None:
        self.settings = settings
        self.bus = bus
        self.vault = vault
        self.instance = f"keyvault-{socket.gethostname()}-{os.getpid()}"
        providers = {name for name, cfg in load_catalog().providers.items() if cfg.requires_key}
        providers |= set(self_hosted_providers(settings.openai_compatible))
        self.auditor = Auditor(bus, self.instance)
        self.provider_keys = ProviderKeyStore(vault, providers, self.auditor)
        self.client_keys = ClientKeyStore(bus)
        self.transport: Recipient | None = None
        self.token_ttl = 0.0

    async def start(self) -> None:
        await self.bus.ensure_kv(subjects.CLIENT_KEYS_BUCKET)
        await self.auditor.setup()
        serve = self.bus.serve
        q = subjects.QUEUE_KEYVAULT
        await serve(subjects.KEYVAULT_PING, q, Empty, self.ping)
        await serve(subjects.KEYVAULT_TRANSPORT_KEY, q, Empty, self.transport_key)
        await serve(subjects.PROVIDER_KEYS_CREATE, q, ProviderKeyCreateSealed, self.create_provider_key)
        await serve(subjects.PROVIDER_KEYS_LIST, q, Empty, self.list_provider_keys)
        await serve(subjects.PROVIDER_KEYS_ROTATE, q, Empty, self.rotate_encryption)
        await serve(subjects.PROVIDER_KEYS_STATUS, q, ProviderKeyStatusChange, self.set_provider_key_status)
        await serve(subjects.PROVIDER_KEYS_DELETE, q, ById, self.delete_provider_key)
        await serve(subjects.PROVIDER_KEYS_FETCH, q, ProviderKeyFetch, self.fetch_provider_keys)
        await serve(subjects.CLIENT_KEYS_CREATE, q, ClientKeyCreate, self.create_client_key)
        await serve(subjects.CLIENT_KEYS_LIST, q, Empty, self.list_client_keys)
        await serve(subjects.CLIENT_KEYS_DELETE, q, ById, self.delete_client_key)

    async def prepare_vault(self, stop: asyncio.Event) -> None:
        """Mount engines, load the transport key and import env keys, retrying until Vault answers."""
        delay = 0.2
        while not stop.is_set():
            try:
                self.token_ttl = await self.vault.login()
                await self.vault.ensure_engines()
                self.transport = await self._transport_key()
                imported = await self.provider_keys.import_from_env(self.settings.env_provider_keys())
                if imported:
                    log.info("imported %d provider key(s) from the environment", imported)
                    await self.bus.publish(subjects.PROVIDER_KEYS_CHANGED, Empty())
                log.info("Vault ready at %s", self.settings.vault_addr)
                return
            except Exception as exc:  # Vault down, sealed or still starting: keep retrying
                log.warning("Vault not ready (%s); retrying", exc)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 5.0)

    async def keep_token_alive(self, stop: asyncio.Event) -> None:
        """Renew an AppRole token at two thirds of its lifetime (log in again past its max)."""
        while not stop.is_set() and self.token_ttl > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(self.token_ttl * 2 / 3, 1.0))
                return
            except TimeoutError:
                pass
            try:
                self.token_ttl = await self.vault.renew()
            except VaultUnavailable as exc:
                log.warning("Vault token renewal failed (%s); retrying", exc)
                self.token_ttl = 3.0  # try again soon

    async def _transport_key(self) -> Recipient:
        """The X25519 key pair admins' new provider keys are sealed to, shared by every
        keyvault replica through Vault (so any replica in the queue group can open them)."""
        stored = await self.vault.get(_TRANSPORT_KEY_PATH)
        if stored is not None:
            return Recipient.from_private_b64(str(stored["private_key"]))
        fresh = Recipient()
        await self.vault.put(_TRANSPORT_KEY_PATH, {"private_key": fresh.private_b64()})
        # Another replica may have won the race: use whatever Vault now holds.
        stored = await self.vault.get(_TRANSPORT_KEY_PATH)
        return Recipient.from_private_b64(str(stored["private_key"])) if stored else fresh

    async def transport_key(self, _: Empty) -> TransportKey:
        if self.transport is None:
            raise GatewayError(UNAVAILABLE, "keyvault is waiting for Vault")
        return TransportKey(public_key=self.transport.public_key_b64)

    async def ping(self, _: Empty) -> Ping:
        return Ping(service="keyvault", instance=self.instance)

    async def create_provider_key(self, req: ProviderKeyCreateSealed) -> ProviderKeyInfo:
        if self.transport is None:
            raise GatewayError(UNAVAILABLE, "keyvault is waiting for Vault")
        try:
            secret = self.transport.open(req.sealed_api_key, context=PROVIDER_KEY_CREATE_CONTEXT).decode()
        except (SealingError, UnicodeDecodeError) as exc:
            raise GatewayError(INVALID_REQUEST, "api_key could not be unsealed", param="api_key") from exc
        info = await self.provider_keys.create(
            ProviderKeyCreate(provider=req.provider, api_key=secret, label=req.label)
        )
        await self.bus.publish(subjects.PROVIDER_KEYS_CHANGED, Empty())
        return info

    async def set_provider_key_status(self, change: ProviderKeyStatusChange) -> ProviderKeyInfo:
        info = await self.provider_keys.set_status(change)
        await self.bus.publish(subjects.PROVIDER_KEYS_CHANGED, Empty())
        return info

    async def rotate_encryption(self, _: Empty) -> EncryptionRotated:
        version, count = await self.provider_keys.rotate_encryption()
        return EncryptionRotated(key_version=version, rewrapped=count)

    async def list_provider_keys(self, _: Empty) -> ProviderKeyList:
        return ProviderKeyList(data=await self.provider_keys.list_all())

    async def delete_provider_key(self, req: ById) -> ProviderKeyInfo:
        info = await self.provider_keys.delete(req.id)
        await self.bus.publish(subjects.PROVIDER_KEYS_CHANGED, Empty())
        return info

    async def fetch_provider_keys(self, req: ProviderKeyFetch) -> SealedProviderKeys:
        keys = await self.provider_keys.sealed_for(req.public_key, req.edge_instance)
        log.info("delivered %d sealed provider key(s) to %s", len(keys), req.edge_instance)
        return SealedProviderKeys(keys=keys)

    async def create_client_key(self, req: ClientKeyCreate) -> ClientKeyCreated:
        return await self.client_keys.create(req)

    async def list_client_keys(self, _: Empty) -> ClientKeyList:
        return ClientKeyList(data=await self.client_keys.list_all())

    async def delete_client_key(self, req: ById) -> ClientKeyInfo:
        return await self.client_keys.delete(req.id)
