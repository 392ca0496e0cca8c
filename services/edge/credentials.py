"""Provider keys held in memory, delivered sealed by keyvault.

The edge owns an ephemeral X25519 key pair (memory only). It fetches every active provider
key sealed to that pair at start, on every change event from keyvault, and when the cached
copy is older than its TTL; requests only read the cache. Keys are never written anywhere.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

from services.edge.providers.base import Credential
from shared import subjects
from shared.bus import Bus, Msg
from shared.errors import NO_PROVIDER_KEY, GatewayError
from shared.messages import ProviderKeyFetch, SealedProviderKeys
from shared.sealing import Recipient, SealingError

log = logging.getLogger("switchyard.edge.credentials")


class Credentials:
    def __init__(self, bus: Bus, instance: str, ttl: float) -> None:
        self.bus = bus
        self.instance = instance
        self.ttl = ttl
        self._recipient = Recipient()
        self._keys: dict[str, list[Credential]] = {}
        self._cursors: dict[str, itertools.cycle[int]] = {}
        self._fetched_at = 0.0
        self._refresh_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.loaded = asyncio.Event()

    def pick(self, provider: str) -> Credential:
        """A key for ``provider``, spread round-robin over its active keys. No I/O."""
        keys = self._keys.get(provider)
        if not keys:
            self._wake.set()  # maybe one was added and the change event is in flight
            raise GatewayError(
                NO_PROVIDER_KEY,
                f"No API key is configured for provider {provider!r}. "
                "An admin can add one with POST /ai/providers/keys.",
            )
        return keys[next(self._cursors[provider]) % len(keys)]

    async def refresh(self) -> None:
        async with self._refresh_lock:
            reply = await self.bus.request(
                subjects.PROVIDER_KEYS_FETCH,
                ProviderKeyFetch(public_key=self._recipient.public_key_b64, edge_instance=self.instance),
                SealedProviderKeys,
                timeout=10.0,
            )
            keys: dict[str, list[Credential]] = {}
            for item in reply.keys:
                try:
                    secret = self._recipient.open(item.sealed, context=item.id.encode()).decode()
                except (SealingError, UnicodeDecodeError):
                    log.error("could not open sealed provider key %s; skipping it", item.id)
                    continue
                keys.setdefault(item.provider, []).append(Credential(key_id=item.id, secret=secret))
            self._keys = keys
            self._cursors = {p: itertools.cycle(range(len(v))) for p, v in keys.items()}
            self._fetched_at = time.monotonic()
            self.loaded.set()
            log.info("holding %d provider key(s) for %d provider(s)", len(reply.keys), len(keys))

    async def run(self) -> None:
        """Refresh at start, on change events, on a miss, and when the TTL runs out."""

        async def on_change(_: Msg) -> None:
            self._wake.set()

        await self.bus.subscribe(subjects.PROVIDER_KEYS_CHANGED, on_change)
        reconnected = self.bus.on_reconnect()
        delay = 0.5
        while True:
            try:
                await self.refresh()
                delay = 0.5
                wait_for = self.ttl
            except Exception as exc:  # keyvault or NATS down: keep the keys we hold
                log.warning("provider key refresh failed (%s); keeping %d cached", exc, len(self._keys))
                wait_for = delay
                delay = min(delay * 2, 10.0)
            self._wake.clear()
            waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(reconnected.wait())]
            try:
                await asyncio.wait(waiters, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            reconnected.clear()
