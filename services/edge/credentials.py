"""Provider keys held in memory, delivered sealed by keyvault.

The edge owns an ephemeral X25519 key pair (memory only) and signs each fetch with its
identity (shared/identity.py), which keyvault checks against its registry. It fetches every active provider
key sealed to that pair at start, on every change event from keyvault, and when the cached
copy is older than its TTL; requests only read the cache. Keys are never written anywhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import math
import time

from services.edge.providers.base import Credential
from shared import subjects
from shared.bus import Bus, Msg
from shared.errors import (
    EDGE_IDENTITY_REFUSED,
    EDGE_UNTRUSTED,
    NO_PROVIDER_KEY,
    PROVIDER_KEY_REFUSED,
    RATE_LIMITED,
    GatewayError,
)
from shared.identity import EdgeIdentity
from shared.messages import (
    RESPONSES_KEY_CONTEXT,
    ProviderKeyInfo,
    ProviderKeyStatusChange,
    RefusedProviderKey,
    SealedProviderKeys,
)
from shared.sealing import Recipient, SealingError

log = logging.getLogger("switchyard.edge.credentials")

_DEFAULT_COOLDOWN = 10.0
_MAX_COOLDOWN = 600.0
_MISS_INTERVAL = 1.0


class Credentials:
    def __init__(self, bus: Bus, instance: str, ttl: float, identity: EdgeIdentity) -> None:
        self.bus = bus
        self.instance = instance
        self.ttl = ttl
        self.identity = identity
        # Why keyvault refused this edge's identity, while it does (None: trusted, or not asked yet).
        self.untrusted: str | None = None
        # The key stored Responses API turns are encrypted with (from keyvault; memory only).
        self.responses_key: bytes | None = None
        self._recipient = Recipient()
        self._keys: dict[str, list[Credential]] = {}
        self._cursors: dict[str, itertools.cycle[int]] = {}
        self._refresh_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.loaded = asyncio.Event()
        self._reports: set[asyncio.Task[None]] = set()
        self._refused: set[str] = set()  # refused upstream; kept out until keyvault has heard
        # Keys out of service because their provider refused them, by provider (no secrets).
        self._out: dict[str, list[RefusedProviderKey]] = {}
        self._last_fetch = 0.0  # monotonic time the newest fetch began
        self._miss_fetch: asyncio.Task[None] | None = None

    def pick(self, provider: str, model: str, exclude: frozenset[str] = frozenset()) -> Credential:
        """A key for ``provider``, round-robin over its active keys, skipping keys cooling down
        after a 429 for ``model`` and those in ``exclude`` (already tried). No I/O."""
        keys = self._keys.get(provider)
        if not keys:
            raise self._none_usable(provider)
        now = _now()
        for _ in range(len(keys)):
            key = keys[next(self._cursors[provider]) % len(keys)]
            if key.key_id not in exclude and not key.cooling(model, now):
                return key
        waits = [k.cooldown_until[model] - now for k in keys if k.key_id not in exclude and k.cooling(model, now)]
        if not waits:  # every key was tried for this request and refused
            raise self._none_usable(provider)
        retry = max(1, math.ceil(min(waits)))
        err = GatewayError(
            RATE_LIMITED,
            f"Every API key for provider {provider!r} is cooling down after a rate limit for `{model}`; "
            f"retry in {retry} s.",
            headers={"retry-after": str(retry)},
        )
        err.cause = "keys"
        raise err

    def _none_usable(self, provider: str) -> GatewayError:
        """The truth about a provider without a usable key: none configured, or every one
        refused by the provider (since when, and why)."""
        if self.untrusted is not None:
            err = GatewayError(
                EDGE_UNTRUSTED,
                "This gateway edge holds no provider keys: keyvault does not accept its identity. "
                "The operator must register it (the edge's log says why).",
            )
            err.cause = "keys"
            return err
        refused = self._out.get(provider)
        if refused:
            first = min(refused, key=lambda k: k.since)
            since = dt.datetime.fromtimestamp(first.since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            err = GatewayError(
                PROVIDER_KEY_REFUSED,
                f"Every API key for provider {provider!r} is refused by the provider ({first.reason} since "
                f"{since}); the gateway re-checks them in the background. An admin can add a working key "
                "with POST /ai/providers/keys.",
            )
        else:
            self._wake.set()  # maybe one was added and the change event is in flight
            err = GatewayError(
                NO_PROVIDER_KEY,
                f"No API key is configured for provider {provider!r}. "
                "An admin can add one with POST /ai/providers/keys.",
            )
        err.cause = "keys"
        return err

    async def fetch_on_miss(self, timeout: float) -> None:
        """Ask keyvault again for a request that found no key, instead of answering 503 while a
        change is on its way. Misses share one fetch, and a fetch that began less than
        ``_MISS_INTERVAL`` ago counts: a flood of requests for a keyless provider is one fetch
        a second, not one per request."""
        if self._miss_fetch is None or self._miss_fetch.done():
            if time.monotonic() - self._last_fetch < _MISS_INTERVAL:
                return
            self._miss_fetch = asyncio.get_running_loop().create_task(self.refresh())
        try:
            await asyncio.wait_for(asyncio.shield(self._miss_fetch), timeout)
        except (GatewayError, TimeoutError) as exc:
            log.warning("could not fetch provider keys on a miss: %s", exc)

    def optional(self, provider: str, model: str, exclude: frozenset[str] = frozenset()) -> Credential | None:
        """For a provider that works without a key (a self-hosted server): a key if an admin
        added one, else None. No I/O."""
        return self.pick(provider, model, exclude) if self._keys.get(provider) else None

    def usable(self, provider: str) -> int:
        """How many keys for ``provider`` this edge holds in service."""
        return len(self._keys.get(provider, []))

    def has_other(self, provider: str, model: str, exclude: frozenset[str]) -> bool:
        now = _now()
        return any(k.key_id not in exclude and not k.cooling(model, now) for k in self._keys.get(provider, []))

    def cool_down(self, key: Credential, model: str, retry_after: str | None) -> None:
        try:
            seconds = float(retry_after) if retry_after else _DEFAULT_COOLDOWN
        except ValueError:
            seconds = _DEFAULT_COOLDOWN
        key.cooldown_until[model] = _now() + min(max(seconds, 1.0), _MAX_COOLDOWN)
        log.warning("provider key %s is rate limited for %s; cooling down for %.0f s", key.key_id, model, seconds)

    def mark_invalid(self, provider: str, key: Credential, reason: str) -> None:
        """The provider refused this key: stop using it here at once, and tell keyvault (off the
        request path), which marks it invalid for every edge and in the admin listing."""
        self._refused.add(key.key_id)
        self._out.setdefault(provider, []).append(
            RefusedProviderKey(id=key.key_id, provider=provider, reason=reason.split(":")[0], since=time.time())
        )
        self._keys[provider] = [k for k in self._keys.get(provider, []) if k.key_id != key.key_id]
        self._cursors[provider] = itertools.cycle(range(max(len(self._keys[provider]), 1)))
        log.warning("provider key %s was refused by %s (%s); not using it", key.key_id, provider, reason)
        task = asyncio.get_running_loop().create_task(self._report_invalid(key.key_id, reason))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report_invalid(self, key_id: str, reason: str) -> None:
        try:
            change = ProviderKeyStatusChange(id=key_id, status="invalid", reason=reason)
            await self.bus.request(subjects.PROVIDER_KEYS_STATUS, change, ProviderKeyInfo, timeout=10.0)
        except Exception as exc:
            log.warning("could not report provider key %s as invalid: %s", key_id, exc)
        finally:
            # From now on keyvault's deliveries tell the truth (an admin may re-enable the key).
            self._refused.discard(key_id)

    async def refresh(self) -> None:
        async with self._refresh_lock:
            self._last_fetch = time.monotonic()
            fetch = self.identity.fetch(self._recipient.public_key_b64, self.instance)
            try:
                reply = await self.bus.request(subjects.PROVIDER_KEYS_FETCH, fetch, SealedProviderKeys, timeout=10.0)
            except GatewayError as exc:
                if exc.code == EDGE_IDENTITY_REFUSED.code:
                    # Revoked or never registered: what this edge holds is no longer its to use.
                    if self.untrusted is None:
                        log.error("keyvault refused this edge's identity; dropping its provider keys: %s", exc)
                    self.untrusted = str(exc)
                    self._keys, self._out, self._cursors = {}, {}, {}
                    self.responses_key = None
                raise
            self.untrusted = None
            keys: dict[str, list[Credential]] = {}
            cooling = {k.key_id: k.cooldown_until for v in self._keys.values() for k in v}  # survives a refresh
            for item in reply.keys:
                if item.id in self._refused:
                    continue
                try:
                    secret = self._recipient.open(item.sealed, context=item.id.encode()).decode()
                except (SealingError, UnicodeDecodeError):
                    log.error("could not open sealed provider key %s; skipping it", item.id)
                    continue
                cred = Credential(key_id=item.id, secret=secret, cooldown_until=cooling.get(item.id, {}))
                keys.setdefault(item.provider, []).append(cred)
            out: dict[str, list[RefusedProviderKey]] = {}
            for refused in reply.refused:
                out.setdefault(refused.provider, []).append(refused)
            for provider, held in self._out.items():  # refused here, not yet known to keyvault
                out.setdefault(provider, []).extend(k for k in held if k.id in self._refused)
            self._keys, self._out = keys, out
            if reply.responses_key:
                try:
                    self.responses_key = self._recipient.open(reply.responses_key, context=RESPONSES_KEY_CONTEXT)
                except SealingError:
                    log.error("could not open the sealed responses key; stored responses stay unreadable here")
            self._cursors = {p: itertools.cycle(range(len(v))) for p, v in keys.items()}
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
            # Cleared before the fetch, not after: a change that lands while a fetch is in
            # flight (an admin adds a key just as the previous change is being fetched) must
            # cause one more fetch, not wait for the TTL.
            self._wake.clear()
            reconnected.clear()
            try:
                await self.refresh()
                delay = 0.5
                wait_for = self.ttl
            except Exception as exc:  # keyvault or NATS down: keep the keys we hold
                # Keyvault starting after this edge is routine: only a failure that outlasts a
                # few retries (about 7 s) is worth a warning.
                level = logging.WARNING if delay >= 8.0 else logging.INFO
                log.log(level, "provider key refresh failed (%s); keeping %d cached", exc, len(self._keys))
                wait_for = delay
                delay = min(delay * 2, 10.0)
            waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(reconnected.wait())]
            try:
                await asyncio.wait(waiters, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()


def _now() -> float:
    """The event loop's clock: a retry that sleeps a key's cooldown (``asyncio.sleep``, on the
    same clock) finds the key usable again. uvloop's clock is cached per loop iteration, so
    ``time.monotonic()`` can be ahead of it by the length of an iteration."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
