"""``python -m services.router``."""

from __future__ import annotations

import asyncio

from services.router.app import Router
from services.router.settings import RouterSettings
from shared.bus import Bus
from shared.runner import run_service


async def main(stop: asyncio.Event) -> None:
    settings = RouterSettings()
    bus = Bus(settings.nats_url, "switchyard-router")
    await bus.connect()
    router = Router(settings, bus)
    await router.start()
    try:
        await router.keep_published(stop)
    finally:
        await bus.close()


if __name__ == "__main__":
    run_service("router", main)
