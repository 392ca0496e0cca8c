"""services/edge/responses/store.py on a real nats-server: what the bucket holds is ciphertext,
readable by any edge with the deployment's responses key and by nothing else."""

from __future__ import annotations

import asyncio
import os

import pytest
from nats.js.errors import KeyNotFoundError

from services.edge.responses.store import ResponseStore, StoredResponse
from shared import subjects
from shared.bus import Bus
from shared.errors import GatewayError
from tests.servers import NatsServer

SECRET_TEXT = "the launch code is 0000-canary"


def test_entries_are_sealed_and_open_only_with_the_key(nats_server: NatsServer) -> None:
    async def run() -> None:
        bus = Bus(nats_server.url, "edge-under-test")
        await bus.connect(deadline=10)
        try:
            kv = await bus.ensure_kv(subjects.RESPONSES_BUCKET, direct=False)
            key = os.urandom(32)
            held: dict[str, bytes | None] = {"key": key}
            store = ResponseStore(bus, lambda: held["key"])
            entry = StoredResponse(owner="ann", response={"id": "resp_1", "output_text": SECRET_TEXT})
            await store.put("resp_1", entry)

            raw = (await kv.get("resp_1")).value
            assert raw is not None and SECRET_TEXT.encode() not in raw and b"ann" not in raw
            # Another edge with the same key reads it; a user who is not its owner does not.
            other = ResponseStore(bus, lambda: key)
            assert (await other.get("resp_1", "ann")).response["output_text"] == SECRET_TEXT
            with pytest.raises(GatewayError) as not_yours:
                await other.get("resp_1", "bob")
            assert not_yours.value.status == 404

            # Under another key (a deployment whose Vault was reset) or moved to another id,
            # the entry does not open: it is not found, never served as something else.
            with pytest.raises(GatewayError) as wrong_key:
                await ResponseStore(bus, lambda: os.urandom(32)).get("resp_1", None)
            assert wrong_key.value.status == 404
            await kv.put("resp_2", raw)
            with pytest.raises(GatewayError) as moved:
                await other.get("resp_2", None)
            assert moved.value.status == 404

            # Before keyvault has delivered the key, nothing is stored in plaintext and reads wait.
            held["key"] = None
            with pytest.raises(GatewayError) as keyless:
                await store.put("resp_3", entry)
            assert keyless.value.status == 503
            with pytest.raises(GatewayError):
                await store.get("resp_1", None)
            with pytest.raises(KeyNotFoundError):  # nothing was written
                await kv.get("resp_3")

            # An entry stored in plaintext before entries were encrypted is still read.
            await kv.put("resp_old", entry.model_dump_json().encode())
            assert (await other.get("resp_old", "ann")).owner == "ann"
        finally:
            await bus.close()

    asyncio.run(run())
