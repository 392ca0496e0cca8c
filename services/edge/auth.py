"""Who is calling: the admin key, or a client key found in the watched KV mirror.

The check is in-process: a SHA-256 of the presented key looked up in a dict kept fresh by
the client-keys bucket watcher. No I/O on the request path.
"""

from __future__ import annotations

import fnmatch
import hmac
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from shared.apikeys import hash_key
from shared.bus import Bus, KVMirror
from shared.catalog import Plan
from shared.errors import INVALID_API_KEY, PERMISSION, GatewayError
from shared.limits import NO_LIMITS, Limits
from shared.messages import ClientKeyRecord
from shared.subjects import CLIENT_KEYS_BUCKET


@dataclass(frozen=True)
class Principal:
    role: Literal["admin", "user"]
    key_id: str
    user: str
    expires_at: float | None = None
    allowed_models: tuple[str, ...] | None = None
    project: str | None = None
    limits: Limits = NO_LIMITS  # the key's own (its user's and project's are looked up apart)

    def may_use(self, *names: str) -> bool:
        """Whether this key may call a model known by any of ``names`` (glob patterns allowed)."""
        if self.allowed_models is None:
            return True
        return any(fnmatch.fnmatchcase(n, p) for n in names for p in self.allowed_models)


ADMIN = Principal(role="admin", key_id="admin", user="admin")


class ClientKeys:
    def __init__(self, bus: Bus, admin_key: str) -> None:
        self._admin_hash = hash_key(admin_key) if admin_key else ""
        self._by_hash: dict[str, Principal] = {}
        self._disabled: frozenset[str] = frozenset()  # hashes of keys an admin disabled
        self.mirror = KVMirror(bus, CLIENT_KEYS_BUCKET, self._rebuild)

    def _rebuild(self, entries: dict[str, bytes]) -> None:
        index: dict[str, Principal] = {}
        disabled: set[str] = set()
        for raw in entries.values():
            try:
                record = ClientKeyRecord.model_validate_json(raw)
            except ValidationError:
                continue
            if record.status == "active":
                allowed = tuple(record.allowed_models) if record.allowed_models is not None else None
                index[record.key_hash] = Principal(
                    role="user",
                    key_id=record.id,
                    user=record.user,
                    expires_at=record.expires_at,
                    allowed_models=allowed,
                    project=record.project,
                    limits=record.limits(),
                )
            elif record.status == "disabled":
                disabled.add(record.key_hash)
        self._by_hash, self._disabled = index, frozenset(disabled)

    def authenticate(self, authorization: str | None, api_key_header: str | None = None) -> Principal:
        token = _bearer(authorization) or (api_key_header or "").strip()
        if not token:
            raise GatewayError(
                INVALID_API_KEY,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            )
        digest = hash_key(token)
        if self._admin_hash and hmac.compare_digest(digest, self._admin_hash):
            return ADMIN
        principal = self._by_hash.get(digest)
        if principal is None:
            if digest in self._disabled:
                raise GatewayError(INVALID_API_KEY, "This API key is disabled.", code="disabled_api_key")
            raise GatewayError(INVALID_API_KEY, "Incorrect API key provided.")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise GatewayError(INVALID_API_KEY, "This API key has expired.", code="expired_api_key")
        return principal


def require_model(principal: Principal, plan: Plan) -> None:
    """The key may use the model as requested, or as it resolved; a request that pins another
    provider or account than the model's own must be allowed that pinned name."""
    resolved = plan.pinned if plan.pinned is not None else plan.model
    if not principal.may_use(plan.requested, resolved):
        raise GatewayError(PERMISSION, f"This API key may not use the model `{plan.requested}`.", param="model")


def require_admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise GatewayError(PERMISSION, "This endpoint needs the admin key.")


def _bearer(header: str | None) -> str:
    if not header:
        return ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
