"""Listing a KV bucket (``Bus.kv_entries``) against a real nats-server: every live entry, right
after it was written, never one deleted or purged."""

from __future__ import annotations

import asyncio

from shared.bus import Bus
from tests.servers import NatsServer


def test_a_listing_holds_every_entry_written_before_it(nats_server: NatsServer) -> None:
    """The keyvault listing met this: nats-py's ``kv.keys()`` sometimes answered without an
    entry created just before (its watcher ends on a count race). Each listing here follows a
    write at once, 60 times over, and must hold everything written so far."""

    async def run() -> None:
        bus = Bus(nats_server.url, "test")
        await bus.connect(deadline=10)
        try:
            kv = await bus.kv("listing_test")
            assert await bus.kv_entries("listing_test") == {}
            written: dict[str, bytes] = {}
            for i in range(60):
                key, value = f"key_{i:02d}", f'{{"n": {i}}}'.encode()
                await kv.put(key, value)
                written[key] = value
                assert await bus.kv_entries("listing_test") == written, f"after writing {key}"
            await kv.delete("key_03")
            await kv.purge("key_04")
            await kv.put("key_05", b'{"n": "again"}')
            expected = {k: v for k, v in written.items() if k not in ("key_03", "key_04")}
            expected["key_05"] = b'{"n": "again"}'
            assert await bus.kv_entries("listing_test") == expected
        finally:
            await bus.close()

    asyncio.run(run())
