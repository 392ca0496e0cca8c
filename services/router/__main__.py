"""``python -m services.router``."""

from __future__ import annotations

import asyncio

from services.router.app import Router
from services.router.settings import RouterSettings
from shared.bus import Bus
from shared.health import Health
from shared.heartbeat import start_heartbeat
from shared.runner import run_service


async def main(stop: asyncio.Event) -> None:
    settings = RouterSettings()
    health = Health("router", settings.host, settings.port, settings.metrics_token.get_secret_value())
    await health.start()
    bus = Bus.for_service(settings, "router")
    await bus.connect()
    heartbeat = await start_heartbeat(bus, "router", settings.heartbeat_seconds)
    router = Router(settings, bus)
    await router.start()

    async def connected() -> bool:
        return bus.connected

    health.add_check("nats", connected)
    health.add_check("route_table", router.table_published)
    try:
        await router.keep_published(stop)
    finally:
        health.draining = True
        heartbeat.cancel()
        await bus.close(settings.drain_seconds)  # answers the requests in hand, takes no more
        await health.stop()


if __name__ == "__main__":
    run_service("router", main)
