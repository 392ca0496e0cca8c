"""``/healthz`` and ``/readyz`` of the bus services: ready only when every check passes and
no drain has started; a failing or raising check is "not ready", never a 500."""

from __future__ import annotations

import asyncio

import aiohttp

from shared.health import Health


def test_readiness_follows_checks_and_drain() -> None:
    async def run() -> None:
        state = {"nats": True}

        async def nats() -> bool:
            return state["nats"]

        async def broken() -> bool:
            raise RuntimeError("the store is gone")

        health = Health("router", "127.0.0.1", 0)
        port = await health.start()
        assert port > 0
        health.add_check("nats", nats)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:

                async def get(path: str) -> tuple[int, dict[str, object]]:
                    async with http.get(base + path) as resp:
                        return resp.status, await resp.json()

                assert await get("/healthz") == (200, {"status": "ok", "service": "router"})
                status, body = await get("/readyz")
                assert status == 200 and body["checks"] == {"nats": True}

                state["nats"] = False
                status, body = await get("/readyz")
                assert status == 503 and body["checks"] == {"nats": False}

                state["nats"] = True
                health.add_check("clickhouse", broken)
                status, body = await get("/readyz")
                assert status == 503 and body["checks"] == {"nats": True, "clickhouse": False}

                del health.checks["clickhouse"]
                health.draining = True
                status, body = await get("/readyz")
                assert status == 503 and body["checks"] == {"nats": True, "draining": False}
                assert (await get("/healthz"))[0] == 200  # alive while it drains
        finally:
            await health.stop()

    asyncio.run(run())
