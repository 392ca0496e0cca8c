"""Provider keys: Transit-encrypted in Vault, listed without secrets, delivered sealed."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable
from typing import TypeVar

from pydantic import SecretStr

from services.keyvault.vault import Vault, VaultUnavailable
from shared.audit import Auditor
from shared.errors import CONFLICT, INVALID_REQUEST, NOT_FOUND, UNAVAILABLE, GatewayError
from shared.messages import (
    ProviderKeyCreate,
    ProviderKeyInfo,
    ProviderKeyStatusChange,
    RefusedProviderKey,
    SealedProviderKey,
)
from shared.sealing import SealingError, seal

T = TypeVar("T")

log = logging.getLogger("switchyard.keyvault.provider_keys")

_PREFIX = "provider-keys"
_ID = re.compile(r"pk_[0-9a-f]{16}")  # what create() makes: nothing else names a Vault path


def _path(key_id: str) -> str:
    """The Vault path of a key id; an id create() could not have made is not found (a 404,
    never a Vault path of the caller's making)."""
    if not _ID.fullmatch(key_id):
        raise GatewayError(NOT_FOUND, f"no provider key {key_id!r}", param="id")
    return f"{_PREFIX}/{key_id}"


class StoredProviderKey(ProviderKeyInfo):
    """What KV v2 holds per key: metadata and the Transit ciphertext, never the plaintext."""

    ciphertext: str

    def info(self) -> ProviderKeyInfo:
        return ProviderKeyInfo.model_validate(self.model_dump(exclude={"ciphertext"}))


def fingerprint(secret: str) -> str:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return f"sha256:{digest[:12]}"


def _context(key_id: str) -> str:
    return f"switchyard/provider-key/{key_id}"


class ProviderKeyStore:
    def __init__(self, vault: Vault, known_providers: set[str], auditor: Auditor) -> None:
        self.vault = vault
        self.known_providers = known_providers
        self.auditor = auditor

    async def _guard(self, coro: Awaitable[T]) -> T:
        try:
            return await coro
        except VaultUnavailable as exc:
            raise GatewayError(UNAVAILABLE, f"secret store unavailable: {exc}") from exc

    async def _all(self) -> list[StoredProviderKey]:
        ids = await self.vault.list(_PREFIX)
        out = []
        for key_id in ids:
            data = await self.vault.get(f"{_PREFIX}/{key_id}")  # as Vault lists them
            if data is not None:
                out.append(StoredProviderKey.model_validate(data))
        return sorted(out, key=lambda k: (k.provider, k.created_at))

    async def list_all(self) -> list[ProviderKeyInfo]:
        stored = await self._guard(self._all())
        return [k.info() for k in stored]

    async def create(self, request: ProviderKeyCreate, *, source: str = "api") -> ProviderKeyInfo:
        provider = request.provider.strip().lower()
        if provider not in self.known_providers:
            raise GatewayError(
                INVALID_REQUEST,
                f"unknown provider {request.provider!r}; known: {', '.join(sorted(self.known_providers))}",
                param="provider",
            )
        secret = request.api_key.strip()
        if not secret:
            raise GatewayError(INVALID_REQUEST, "api_key must not be empty", param="api_key")
        existing = await self._guard(self._all())
        if any(k.provider == provider and k.label == request.label for k in existing):
            raise GatewayError(
                CONFLICT, f"provider {provider!r} already has a key labelled {request.label!r}", param="label"
            )
        key_id = "pk_" + secrets.token_hex(8)
        ciphertext = await self._guard(self.vault.encrypt(secret.encode(), _context(key_id)))
        stored = StoredProviderKey(
            id=key_id,
            provider=provider,
            label=request.label,
            fingerprint=fingerprint(secret),
            created_at=time.time(),
            source="env" if source == "env" else "api",
            ciphertext=ciphertext,
        )
        await self._guard(self.vault.put(f"{_PREFIX}/{key_id}", stored.model_dump()))
        log.info("stored provider key %s for %s (%s)", key_id, provider, stored.fingerprint)
        return stored.info()

    async def set_status(self, change: ProviderKeyStatusChange) -> ProviderKeyInfo:
        data = await self._guard(self.vault.get(_path(change.id)))
        if data is None:
            raise GatewayError(NOT_FOUND, f"no provider key {change.id!r}", param="id")
        key = StoredProviderKey.model_validate(data)
        if change.status == "invalid" and key.status != "active":
            return key.info()  # an admin's decision (disabled) stands; already invalid stays so
        if change.status == "active" and change.reason.startswith("probe:") and key.status != "invalid":
            return key.info()  # a probe only brings back what a provider refused
        since = time.time() if change.status != key.status else key.status_since
        updated = key.model_copy(
            update={"status": change.status, "status_reason": change.reason, "status_since": since}
        )
        await self._guard(self.vault.put(f"{_PREFIX}/{key.id}", updated.model_dump()))
        log.info("provider key %s is now %s%s", key.id, change.status, f" ({change.reason})" if change.reason else "")
        return updated.info()

    async def delete(self, key_id: str) -> ProviderKeyInfo:
        data = await self._guard(self.vault.get(_path(key_id)))
        if data is None:
            raise GatewayError(NOT_FOUND, f"no provider key {key_id!r}", param="id")
        await self._guard(self.vault.delete(_path(key_id)))
        log.info("deleted provider key %s", key_id)
        return StoredProviderKey.model_validate(data).info()

    async def sealed_for(
        self, public_key: str, edge_instance: str
    ) -> tuple[list[SealedProviderKey], list[RefusedProviderKey]]:
        """Every active key, decrypted by Transit and sealed to one edge's public key; and the
        keys out of service because their provider refused them (why and since when)."""
        out = []
        refused = []
        for key in await self._guard(self._all()):
            if key.status == "invalid":
                refused.append(
                    RefusedProviderKey(
                        id=key.id,
                        provider=key.provider,
                        reason=key.status_reason.split(":")[0] or "refused",
                        since=key.status_since or key.created_at,
                    )
                )
            if key.status != "active":
                continue
            plaintext = await self._guard(self.vault.decrypt(key.ciphertext, _context(key.id)))
            self.auditor.record(
                actor=self.auditor.instance, action="provider_key.decrypt", target=key.id, source=edge_instance
            )
            try:
                sealed = seal(public_key, plaintext, context=key.id.encode())
            except SealingError as exc:
                raise GatewayError(INVALID_REQUEST, str(exc), param="public_key") from exc
            finally:
                del plaintext
            out.append(SealedProviderKey(id=key.id, provider=key.provider, sealed=sealed))
        return out, refused

    async def refused(self) -> list[StoredProviderKey]:
        """The keys a provider refused (to be probed)."""
        return [k for k in await self._guard(self._all()) if k.status == "invalid"]

    async def reveal_for_probe(self, key: StoredProviderKey) -> str:
        """A refused key's plaintext, for the probe that may bring it back (audited)."""
        plaintext = await self._guard(self.vault.decrypt(key.ciphertext, _context(key.id)))
        self.auditor.record(actor=self.auditor.instance, action="provider_key.probe", target=key.id)
        return plaintext.decode()

    async def rotate_encryption(self) -> tuple[int, int]:
        """Rotate the Transit key and re-encrypt every stored key under the new version, then
        retire the old versions. Returns ``(new_version, keys_rewrapped)``.

        OpenBao's rewrap endpoint takes no associated data, so each key is decrypted and
        encrypted again here, inside keyvault, the one service allowed to see plaintext.
        Edges keep serving from the keys they hold; a fetch during the rotation still works
        because every version stays usable until all keys are rewrapped.
        """
        version = await self._guard(self.vault.rotate())
        stored = await self._guard(self._all())
        for key in stored:
            plaintext = await self._guard(self.vault.decrypt(key.ciphertext, _context(key.id)))
            self.auditor.record(actor=self.auditor.instance, action="provider_key.reencrypt", target=key.id)
            ciphertext = await self._guard(self.vault.encrypt(plaintext, _context(key.id)))
            del plaintext
            updated = key.model_copy(update={"ciphertext": ciphertext})
            await self._guard(self.vault.put(f"{_PREFIX}/{key.id}", updated.model_dump()))
        await self._guard(self.vault.retire_versions_below(version))
        log.info("rotated the provider-key encryption key to version %d; re-encrypted %d key(s)", version, len(stored))
        return version, len(stored)

    async def import_from_env(self, keys: dict[str, SecretStr]) -> int:
        """Import provider keys found in the environment, once: a known fingerprint is skipped."""
        existing = {(k.provider, k.fingerprint) for k in await self._guard(self._all())}
        imported = 0
        for provider, secret in keys.items():
            value = secret.get_secret_value().strip()
            if provider not in self.known_providers or (provider, fingerprint(value)) in existing:
                continue
            label = f"env-{fingerprint(value)[7:15]}"
            await self.create(ProviderKeyCreate(provider=provider, api_key=value, label=label), source="env")
            imported += 1
        return imported
