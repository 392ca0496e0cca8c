"""The keyvault service: provider keys in Vault, client keys as hashes, over NATS."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket

import aiohttp

from services.keyvault.client_keys import ClientKeyStore, ProjectStore
from services.keyvault.prober import accepted
from services.keyvault.provider_keys import ProviderKeyStore
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.users import UserStore
from services.keyvault.vault import Vault, VaultUnavailable
from shared import subjects
from shared.audit import Auditor
from shared.bus import Bus, KVMirror
from shared.catalog import ProviderConfig, RouteTable, load_catalog, published_table, self_hosted_providers
from shared.errors import EDGE_IDENTITY_REFUSED, INVALID_REQUEST, UNAVAILABLE, GatewayError
from shared.identity import IdentityError, Registry
from shared.limits import BUDGET_BUCKET, RATE_BUCKET, RATE_BUCKET_TTL
from shared.messages import (
    CLIENT_KEY_REPLY_CONTEXT,
    PROVIDER_KEY_CREATE_CONTEXT,
    RESPONSES_KEY_CONTEXT,
    ById,
    ByName,
    ByUser,
    ClientKeyCreatedSealed,
    ClientKeyCreateSealed,
    ClientKeyInfo,
    ClientKeyList,
    ClientKeyPatchRequest,
    Empty,
    EncryptionRotated,
    Ping,
    Project,
    ProjectCreate,
    ProjectList,
    ProjectPatchRequest,
    ProviderKeyCreate,
    ProviderKeyCreateSealed,
    ProviderKeyFetch,
    ProviderKeyInfo,
    ProviderKeyList,
    ProviderKeyStatusChange,
    SealedProviderKeys,
    TransportKey,
    UserLimitsPut,
)
from shared.sealing import Recipient, SealingError, seal

log = logging.getLogger("switchyard.keyvault")

_TRANSPORT_KEY_PATH = "keyvault/transport-key"
_RESPONSES_KEY_PATH = "keyvault/responses-key"


def takes_keys(cfg: ProviderConfig) -> bool:
    """Whether keys may be added for a provider: those that need one, and those that take one
    but can do without (a catalog provider with a key variable: Bedrock signs with the AWS
    credential chain when it has none)."""
    return cfg.requires_key or bool(cfg.key_env)


class Keyvault:
    def __init__(self, settings: KeyvaultSettings, bus: Bus, vault: Vault) -> None:
        self.settings = settings
        self.bus = bus
        self.vault = vault
        self.instance = f"keyvault-{socket.gethostname()}-{os.getpid()}"
        self._self_hosted = set(self_hosted_providers(settings.openai_compatible))
        providers = {name for name, cfg in load_catalog().providers.items() if takes_keys(cfg)}
        self.auditor = Auditor(bus, self.instance)
        self.provider_keys = ProviderKeyStore(vault, providers | self._self_hosted, self.auditor)
        # The route table: named accounts take keys too, and the prober needs the providers' URLs.
        self.table: RouteTable | None = None
        self.routes = KVMirror(bus, subjects.ROUTES_BUCKET, self._table_changed)
        self._routes_task: asyncio.Task[None] | None = None
        self.client_keys = ClientKeyStore(bus)
        self.projects = ProjectStore(bus, self.client_keys)
        self.users = UserStore(bus)
        self.transport: Recipient | None = None
        self.responses_key: bytes | None = None  # what edges encrypt stored Responses API turns with
        self.token_ttl = 0.0
        if settings.edge_identities_dir is None:
            raise RuntimeError(
                "GATEWAY_EDGE_IDENTITIES_DIR is not set: keyvault delivers provider keys only to edges whose "
                "identity is registered there (docs/security.md, `python -m shared.identity new NAME DIR`)"
            )
        self.edge_identities = Registry(settings.edge_identities_dir)

    def _table_changed(self, entries: dict[str, bytes]) -> None:
        table = published_table(entries, subjects.ROUTES_KEY)
        if table is None:
            return
        self.table = table
        known = {name for name, cfg in self.table.providers.items() if takes_keys(cfg)}
        self.provider_keys.known_providers = known | self._self_hosted

    async def probe_refused_keys(self, stop: asyncio.Event) -> None:
        """Every ``key_probe_seconds``: try each key a provider refused; bring back those it
        accepts again."""
        async with aiohttp.ClientSession(trust_env=False) as http:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.key_probe_seconds)
                    return
                except TimeoutError:
                    pass
                try:
                    await self._probe_once(http)
                except GatewayError as exc:  # Vault unavailable: next round
                    log.warning("could not probe refused provider keys: %s", exc.message)

    async def _probe_once(self, http: aiohttp.ClientSession) -> None:
        table = self.table
        if table is None or self.transport is None:
            return
        back = 0
        for key in await self.provider_keys.refused():
            cfg = table.providers.get(key.provider)
            if cfg is None:
                continue
            verdict = await accepted(http, key.provider, cfg, await self.provider_keys.reveal_for_probe(key))
            if verdict:
                change = ProviderKeyStatusChange(
                    id=key.id, status="active", reason="probe: the provider accepts it again"
                )
                await self.provider_keys.set_status(change)
                log.info("provider key %s of %s is accepted again; back in service", key.id, key.provider)
                back += 1
        if back:
            await self.bus.publish(subjects.PROVIDER_KEYS_CHANGED, Empty())

    async def stop(self) -> None:
        """Stop following the route table (before the bus closes under it)."""
        if self._routes_task is not None:
            self._routes_task.cancel()
            await asyncio.gather(self._routes_task, return_exceptions=True)

    async def start(self) -> None:
        self._routes_task = asyncio.create_task(self.routes.run(), name="routes")
        await self.bus.ensure_kv(subjects.CLIENT_KEYS_BUCKET)
        await self.bus.ensure_kv(subjects.PROJECTS_BUCKET)
        await self.bus.ensure_kv(subjects.USERS_BUCKET)
        # The counters edges lease quota from (docs/limits.md); keyvault makes them, as it
        # keeps the limits they enforce.
        await self.bus.ensure_kv(RATE_BUCKET, ttl=RATE_BUCKET_TTL)
        await self.bus.ensure_kv(BUDGET_BUCKET)
        # Stored Responses API responses (docs/responses.md): edges write and read them; read
        # through the stream's leader, so a turn stored on one edge is found on any other.
        await self.bus.ensure_kv(subjects.RESPONSES_BUCKET, ttl=self.settings.responses_ttl_seconds, direct=False)
        await self.auditor.setup()
        try:
            names = sorted(name for name, _ in self.edge_identities.load().values())
            log.info("edge identities registered in %s: %s", self.edge_identities.directory, ", ".join(names) or "none")
        except IdentityError as exc:
            log.error("%s; no edge will receive provider keys until it can be read", exc)
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
        await serve(subjects.CLIENT_KEYS_CREATE, q, ClientKeyCreateSealed, self.create_client_key)
        await serve(subjects.CLIENT_KEYS_LIST, q, Empty, self.list_client_keys)
        await serve(subjects.CLIENT_KEYS_DELETE, q, ById, self.delete_client_key)
        await serve(subjects.CLIENT_KEYS_PATCH, q, ClientKeyPatchRequest, self.client_keys.patch)
        await serve(subjects.CLIENT_KEYS_GET, q, ById, self.client_keys.get)
        await serve(subjects.PROJECTS_CREATE, q, ProjectCreate, self.projects.create)
        await serve(subjects.PROJECTS_LIST, q, Empty, self.list_projects)
        await serve(subjects.PROJECTS_PATCH, q, ProjectPatchRequest, self.projects.patch)
        await serve(subjects.PROJECTS_DELETE, q, ByName, self.delete_project)
        await serve(subjects.USERS_PUT, q, UserLimitsPut, self.users.put)
        await serve(subjects.USERS_LIST, q, Empty, self.users.list_all)
        await serve(subjects.USERS_DELETE, q, ByUser, self.users.delete)

    async def prepare_vault(self, stop: asyncio.Event) -> None:
        """Mount engines, load the transport key and import env keys, retrying until Vault answers."""
        delay = 0.2
        while not stop.is_set():
            try:
                self.token_ttl = await self.vault.login()
                await self.vault.ensure_engines()
                self.transport = await self._transport_key()
                self.responses_key = await self._responses_key()
                imported = await self.provider_keys.import_from_env(self.settings.env_provider_keys())
                if imported:
                    log.info("imported %d provider key(s) from the environment", imported)
                # Announced whether or not anything was imported: an edge that asked while
                # this keyvault (or Vault) was still starting fetches now instead of at its
                # next retry.
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
        stored = await self.vault.get_or_create(_TRANSPORT_KEY_PATH, lambda: {"private_key": Recipient().private_b64()})
        return Recipient.from_private_b64(str(stored["private_key"]))

    async def _responses_key(self) -> bytes:
        """The AES-256 key edges encrypt stored Responses API turns with: made once, kept in
        Vault, shared by every keyvault replica; edges get it sealed, with the provider keys."""
        stored = await self.vault.get_or_create(
            _RESPONSES_KEY_PATH, lambda: {"key": base64.b64encode(os.urandom(32)).decode()}
        )
        return base64.b64decode(str(stored["key"]))

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
        if req.provider.strip().lower() not in self.provider_keys.known_providers:
            await self.routes.caught_up(3.0)  # an account added a moment ago: read the latest table
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
        """Provider keys sealed to the asking edge, once its identity is checked against the
        registry; a refusal is audited with the instance the fetch claimed."""
        try:
            edge = self.edge_identities.verify(req)
        except IdentityError as exc:
            log.warning("refused provider keys to %r: %s", req.edge_instance, exc)
            self.auditor.record(
                actor=self.auditor.instance,
                action="provider_key.fetch_refused",
                status=EDGE_IDENTITY_REFUSED.status,
                source=f"unverified/{req.edge_instance}",
            )
            raise GatewayError(EDGE_IDENTITY_REFUSED, str(exc)) from exc
        source = f"{edge.name}/{req.edge_instance}"  # the verified identity, then what it calls itself
        keys, refused = await self.provider_keys.sealed_for(req.public_key, source)
        log.info("delivered %d sealed provider key(s) to edge identity %s", len(keys), source)
        sealed_responses_key = (
            seal(req.public_key, self.responses_key, context=RESPONSES_KEY_CONTEXT) if self.responses_key else ""
        )
        return SealedProviderKeys(keys=keys, refused=refused, responses_key=sealed_responses_key)

    async def create_client_key(self, req: ClientKeyCreateSealed) -> ClientKeyCreatedSealed:
        """A new client key, its secret sealed to the asking request's key (never in plaintext
        on the bus)."""
        try:
            seal(req.seal_to, b"", context=CLIENT_KEY_REPLY_CONTEXT)  # a key it can seal to, before one is made
        except SealingError as exc:
            raise GatewayError(INVALID_REQUEST, str(exc), param="seal_to") from exc
        created = await self.client_keys.create(req.create)
        sealed = seal(req.seal_to, created.key.encode(), context=CLIENT_KEY_REPLY_CONTEXT)
        return ClientKeyCreatedSealed(sealed_key=sealed, **created.model_dump(exclude={"key", "object"}))

    async def list_client_keys(self, _: Empty) -> ClientKeyList:
        return ClientKeyList(data=await self.client_keys.list_all())

    async def delete_client_key(self, req: ById) -> ClientKeyInfo:
        return await self.client_keys.delete(req.id)

    async def list_projects(self, _: Empty) -> ProjectList:
        return ProjectList(data=await self.projects.list_all())

    async def delete_project(self, req: ByName) -> Project:
        return await self.projects.delete(req.name)
