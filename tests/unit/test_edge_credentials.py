"""The edge's provider-key cache on a real nats-server: a change announced while a fetch is
in flight is fetched again at once, not after the cache's TTL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from services.edge.credentials import Credentials
from shared import subjects
from shared.bus import Bus
from shared.errors import GatewayError
from shared.identity import EdgeIdentity
from shared.messages import Empty, ProviderKeyFetch, RefusedProviderKey, SealedProviderKey, SealedProviderKeys
from shared.sealing import seal
from tests.servers import NatsServer

TTL = 600.0  # far longer than the test may take: only a change event can bring the key in time


def test_a_change_during_an_in_flight_fetch_is_not_lost(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()

    async def run() -> None:
        # Keyvault's side of the exchange: the first fetch sees one key; while it is being
        # answered an admin adds another (keyvault announces the change before that answer
        # lands). The edge always holds a key, so no miss in pick() wakes it up either.
        keyvault = Bus(nats.url, "keyvault-under-test")
        await keyvault.connect(deadline=10)
        fetches: list[float] = []

        def key(request: ProviderKeyFetch, key_id: str, secret: str) -> SealedProviderKey:
            sealed = seal(request.public_key, secret.encode(), context=key_id.encode())
            return SealedProviderKey(id=key_id, provider="openai", sealed=sealed)

        async def fetch(request: ProviderKeyFetch) -> SealedProviderKeys:
            fetches.append(time.monotonic())
            old = key(request, "pk_old", "sk-old")
            if len(fetches) == 1:
                await keyvault.publish(subjects.PROVIDER_KEYS_CHANGED, Empty())
                await keyvault.nc.flush()
                # The edge has heard the change before this answer goes.
                await asyncio.wait_for(credentials._wake.wait(), 10)
                return SealedProviderKeys(keys=[old])
            return SealedProviderKeys(keys=[old, key(request, "pk_new", "sk-added-mid-fetch")])

        await keyvault.serve(subjects.PROVIDER_KEYS_FETCH, "keyvault", ProviderKeyFetch, fetch)

        edge = Bus(nats.url, "edge-under-test")
        await edge.connect(deadline=10)
        credentials = Credentials(edge, "edge-1", ttl=TTL, identity=EdgeIdentity.generate())
        task = asyncio.create_task(credentials.run())
        try:
            await asyncio.wait_for(credentials.loaded.wait(), 10)
            deadline = time.monotonic() + 10
            secrets: set[str] = set()
            while "sk-added-mid-fetch" not in secrets:
                assert time.monotonic() < deadline, f"the added key never arrived ({len(fetches)} fetch(es))"
                secrets.add(credentials.pick("openai", "gpt-4o").secret)
                await asyncio.sleep(0.05)
            assert secrets == {"sk-old", "sk-added-mid-fetch"}
            assert len(fetches) == 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await edge.close()
            await keyvault.close()

    try:
        asyncio.run(run())
    finally:
        nats.stop()


def test_misses_share_one_fetch_and_errors_tell_the_truth(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()

    async def run() -> None:
        keyvault = Bus(nats.url, "keyvault-under-test")
        await keyvault.connect(deadline=10)
        fetches: list[float] = []
        answer_now, asked = asyncio.Event(), asyncio.Event()

        async def fetch(request: ProviderKeyFetch) -> SealedProviderKeys:
            fetches.append(time.monotonic())
            asked.set()
            await answer_now.wait()
            refused = RefusedProviderKey(id="pk_bad", provider="anthropic", reason="HTTP 401", since=1_796_000_000)
            return SealedProviderKeys(keys=[], refused=[refused])

        await keyvault.serve(subjects.PROVIDER_KEYS_FETCH, "keyvault", ProviderKeyFetch, fetch)
        edge = Bus(nats.url, "edge-under-test")
        await edge.connect(deadline=10)
        credentials = Credentials(edge, "edge-1", ttl=TTL, identity=EdgeIdentity.generate())
        # Fifty requests miss at once: one fetch serves them all.
        misses = [asyncio.create_task(credentials.fetch_on_miss(timeout=10)) for _ in range(50)]
        await asyncio.wait_for(asked.wait(), 10)  # the fetch is with keyvault while all fifty wait
        answer_now.set()
        await asyncio.gather(*misses)
        assert len(fetches) == 1
        await credentials.fetch_on_miss(timeout=10)  # within a second of the last fetch: none
        assert len(fetches) == 1

        with pytest.raises(GatewayError) as none:
            credentials.pick("openai", "gpt-4o")
        assert none.value.code == "provider_key_missing" and "No API key is configured" in none.value.message
        with pytest.raises(GatewayError) as refused:
            credentials.pick("anthropic", "claude-sonnet-4-6")
        assert refused.value.code == "provider_key_refused" and refused.value.status == 503
        assert "refused by the provider (HTTP 401 since 2026-11-30T" in refused.value.message
        await edge.close()
        await keyvault.close()

    try:
        asyncio.run(run())
    finally:
        nats.stop()
