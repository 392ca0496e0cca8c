"""``python -m services.metering``."""

from __future__ import annotations

import asyncio

from services.metering.app import Metering
from services.metering.settings import MeteringSettings
from services.metering.sink import Sink
from shared.bus import Bus
from shared.runner import install_stop_handlers, run_service


async def main(stop: asyncio.Event) -> None:
    settings = MeteringSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sink = Sink(settings.dsn(), settings.retention_days)
    await sink.open()
    install_stop_handlers(stop)  # the embedded engine replaced them while loading
    bus = Bus(settings.nats_url, "switchyard-metering")
    await bus.connect()
    service = Metering(settings, bus, sink)
    await service.start()
    consumers = [asyncio.create_task(service.consumer.run(stop)), asyncio.create_task(service.audit.run(stop))]
    await stop.wait()
    await asyncio.gather(*consumers)  # each finishes the batch in hand, then returns
    await bus.close()
    await sink.close()


if __name__ == "__main__":
    run_service("metering", main)
