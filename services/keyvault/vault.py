"""The one seam to Vault (hvac): Transit for encryption, KV v2 for storage.

hvac is synchronous, so every call runs in a worker thread; the event loop never blocks on
Vault. Failures (Vault down, sealed, forbidden) surface as :class:`VaultUnavailable`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import hvac
import hvac.exceptions
import requests
from prometheus_client import Counter, Histogram

VAULT_SECONDS = Histogram(
    "switchyard_vault_request_duration_seconds",
    "Calls from keyvault to Vault, by operation",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
VAULT_ERRORS = Counter(
    "switchyard_vault_errors_total", "Calls to Vault that failed, by operation and kind", ["operation", "kind"]
)


class VaultUnavailable(Exception):
    pass


class Vault:
    def __init__(self, addr: str, token: str, *, transit_mount: str, transit_key: str, kv_mount: str) -> None:
        self._client = hvac.Client(url=addr, token=token or None, timeout=5)
        self.transit_mount = transit_mount
        self.transit_key = transit_key
        self.kv_mount = kv_mount
        self._approle: tuple[str, str, str] | None = None

    # --- authentication -------------------------------------------------------------------

    def use_approle(self, role_id: str, secret_id: str, mount: str = "approle") -> None:
        self._approle = (role_id, secret_id, mount)

    async def login(self) -> float:
        """Log in with AppRole (if configured); returns the token's lifetime in seconds
        (0 for a static token, which is not renewed here)."""
        if self._approle is None:
            return 0.0
        role_id, secret_id, mount = self._approle
        try:
            resp = await self._call(self._client.auth.approle.login, role_id, secret_id=secret_id, mount_point=mount)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden, VaultUnavailable) as exc:
            raise VaultUnavailable("AppRole login refused: check VAULT_ROLE_ID / VAULT_SECRET_ID") from exc
        return float(resp["auth"]["lease_duration"])

    async def renew(self) -> float:
        """Renew the AppRole token, or log in again once it cannot be renewed any more;
        returns the new lifetime."""
        try:
            resp = await self._call(self._client.auth.token.renew_self)
            ttl = float(resp["auth"]["lease_duration"])
            granted = float(resp["auth"].get("token_ttl") or 0) or ttl
            # Near its maximum lifetime Vault grants less than asked: start a fresh token now.
            if ttl >= 2.0 and ttl >= granted * 0.5:
                return ttl
        except (VaultUnavailable, hvac.exceptions.VaultError):
            pass
        return await self.login()

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._call(fn, *args, **kwargs)
        except hvac.exceptions.Forbidden:
            if self._approle is not None:
                # The AppRole token ran out (a renewal lost a race with its expiry): log in, retry once.
                await self.login()
                try:
                    return await self._call(fn, *args, **kwargs)
                except hvac.exceptions.Forbidden:
                    pass
            raise VaultUnavailable("Vault refused the keyvault's token") from None

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        operation = getattr(fn, "__name__", "call")
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (requests.RequestException, hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError) as exc:
            VAULT_ERRORS.labels(operation, "unavailable").inc()
            raise VaultUnavailable(f"Vault is unreachable or sealed ({type(exc).__name__})") from exc
        except hvac.exceptions.VaultError as exc:
            VAULT_ERRORS.labels(operation, type(exc).__name__.lower()).inc()
            raise
        finally:
            VAULT_SECONDS.labels(operation).observe(time.perf_counter() - started)

    # --- setup ----------------------------------------------------------------------------

    async def ensure_engines(self) -> None:
        """Mount Transit and KV v2 and create the Transit key if they are missing."""
        try:
            mounts = await self._run(self._client.sys.list_mounted_secrets_engines)
        except VaultUnavailable as exc:
            if self._approle is not None and "refused" in str(exc):
                return  # a least-privilege AppRole: the operator mounted the engines
            raise
        present = {path.rstrip("/") for path in (mounts.get("data") or mounts)}
        if self.transit_mount not in present:
            await self._run(self._client.sys.enable_secrets_engine, "transit", path=self.transit_mount)
        if self.kv_mount not in present:
            await self._run(self._client.sys.enable_secrets_engine, "kv", path=self.kv_mount, options={"version": "2"})
        try:
            await self._run(self._client.secrets.transit.read_key, self.transit_key, mount_point=self.transit_mount)
        except hvac.exceptions.InvalidPath:
            await self._run(
                self._client.secrets.transit.create_key,
                self.transit_key,
                key_type="aes256-gcm96",
                mount_point=self.transit_mount,
            )

    async def healthy(self) -> bool:
        try:
            status = await self._run(self._client.sys.read_health_status, method="GET")
        except VaultUnavailable:
            return False
        if isinstance(status, dict):
            return not status.get("sealed", True)
        return getattr(status, "status_code", 500) == 200

    # --- transit --------------------------------------------------------------------------

    async def encrypt(self, plaintext: bytes, context: str) -> str:
        resp = await self._run(
            self._client.secrets.transit.encrypt_data,
            self.transit_key,
            plaintext=base64.b64encode(plaintext).decode(),
            associated_data=base64.b64encode(context.encode()).decode(),
            mount_point=self.transit_mount,
        )
        return str(resp["data"]["ciphertext"])

    async def decrypt(self, ciphertext: str, context: str) -> bytes:
        resp = await self._run(
            self._client.secrets.transit.decrypt_data,
            self.transit_key,
            ciphertext=ciphertext,
            associated_data=base64.b64encode(context.encode()).decode(),
            mount_point=self.transit_mount,
        )
        return base64.b64decode(resp["data"]["plaintext"])

    async def rotate(self) -> int:
        """A new version of the Transit key; returns it. New encryptions use it at once."""
        await self._run(self._client.secrets.transit.rotate_key, self.transit_key, mount_point=self.transit_mount)
        info = await self._run(self._client.secrets.transit.read_key, self.transit_key, mount_point=self.transit_mount)
        return int(info["data"]["latest_version"])

    async def retire_versions_below(self, version: int) -> None:
        await self._run(
            self._client.secrets.transit.update_key_configuration,
            self.transit_key,
            min_decryption_version=version,
            mount_point=self.transit_mount,
        )

    # --- kv v2 ----------------------------------------------------------------------------

    async def put(self, path: str, data: dict[str, Any]) -> None:
        await self._run(
            self._client.secrets.kv.v2.create_or_update_secret, path=path, secret=data, mount_point=self.kv_mount
        )

    async def get_or_create(self, path: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """What is at ``path``, written first from ``make()`` if nothing is. The write is KV v2
        check-and-set 0: replicas that start together each make one, the first written stands
        and every one of them reads it back."""
        stored = await self.get(path)
        if stored is not None:
            return stored
        try:
            await self._run(
                self._client.secrets.kv.v2.create_or_update_secret,
                path=path,
                secret=make(),
                cas=0,
                mount_point=self.kv_mount,
            )
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" not in str(exc):
                raise
        stored = await self.get(path)
        if stored is None:
            raise VaultUnavailable(f"{path} was written but cannot be read back")
        return stored

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            resp = await self._run(
                self._client.secrets.kv.v2.read_secret_version,
                path=path,
                mount_point=self.kv_mount,
                raise_on_deleted_version=True,
            )
        except hvac.exceptions.InvalidPath:
            return None
        return dict(resp["data"]["data"])

    async def list(self, path: str) -> list[str]:
        try:
            resp = await self._run(self._client.secrets.kv.v2.list_secrets, path=path, mount_point=self.kv_mount)
        except hvac.exceptions.InvalidPath:
            return []
        return [str(k) for k in resp["data"]["keys"]]

    async def delete(self, path: str) -> None:
        await self._run(
            self._client.secrets.kv.v2.delete_metadata_and_all_versions, path=path, mount_point=self.kv_mount
        )
