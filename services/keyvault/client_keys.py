"""Client API keys: minted here, stored as hashes in a KV bucket that every edge watches."""

from __future__ import annotations

import logging
import secrets
import time

from shared.apikeys import display_prefix, hash_key, new_client_key
from shared.bus import Bus
from shared.errors import INVALID_REQUEST, NOT_FOUND, GatewayError
from shared.messages import ClientKeyCreate, ClientKeyCreated, ClientKeyInfo, ClientKeyRecord
from shared.subjects import CLIENT_KEYS_BUCKET

log = logging.getLogger("switchyard.keyvault.client_keys")


def _info(record: ClientKeyRecord) -> ClientKeyInfo:
    expired = record.expires_at is not None and record.expires_at <= time.time()
    return ClientKeyInfo(
        id=record.id,
        user=record.user,
        name=record.name,
        prefix=record.prefix,
        created_at=record.created_at,
        status="expired" if expired and record.status == "active" else record.status,
        expires_at=record.expires_at,
        allowed_models=record.allowed_models,
    )


class ClientKeyStore:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def create(self, request: ClientKeyCreate) -> ClientKeyCreated:
        if request.expires_at is not None and request.expires_at <= time.time():
            raise GatewayError(INVALID_REQUEST, "expires_at is in the past", param="expires_at")
        key = new_client_key()
        record = ClientKeyRecord(
            id="key_" + secrets.token_hex(8),
            key_hash=hash_key(key),
            prefix=display_prefix(key),
            user=request.user,
            name=request.name,
            created_at=time.time(),
            expires_at=request.expires_at,
            allowed_models=request.allowed_models,
        )
        kv = await self.bus.kv(CLIENT_KEYS_BUCKET)
        await kv.put(record.id, record.model_dump_json().encode())
        log.info("created client key %s for user %s", record.id, record.user)
        return ClientKeyCreated(key=key, **_info(record).model_dump(exclude={"object"}))

    async def list_all(self) -> list[ClientKeyInfo]:
        kv = await self.bus.kv(CLIENT_KEYS_BUCKET)
        try:
            ids = await kv.keys()
        except Exception as exc:  # nats raises NoKeysError on an empty bucket
            if type(exc).__name__ == "NoKeysError":
                return []
            raise
        out = []
        for key_id in ids:
            try:
                entry = await kv.get(key_id)
            except Exception:
                continue  # deleted between keys() and get()
            if entry.value:
                out.append(_info(ClientKeyRecord.model_validate_json(entry.value)))
        return sorted(out, key=lambda k: k.created_at)

    async def delete(self, key_id: str) -> ClientKeyInfo:
        kv = await self.bus.kv(CLIENT_KEYS_BUCKET)
        try:
            entry = await kv.get(key_id)
        except Exception as exc:
            raise GatewayError(NOT_FOUND, f"no client key {key_id!r}", param="id") from exc
        if not entry.value:
            raise GatewayError(NOT_FOUND, f"no client key {key_id!r}", param="id")
        record = ClientKeyRecord.model_validate_json(entry.value)
        await kv.delete(key_id)
        log.info("revoked client key %s of user %s", record.id, record.user)
        return _info(record.model_copy(update={"status": "revoked"}))
