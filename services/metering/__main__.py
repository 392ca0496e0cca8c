"""``python -m services.metering``."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from services.metering.app import Metering
from services.metering.settings import MeteringSettings
from services.metering.sink import Sink
from services.metering.standby import EngineLock
from shared.bus import Bus
from shared.health import Health
from shared.heartbeat import start_heartbeat
from shared.runner import install_stop_handlers, run_service

log = logging.getLogger("switchyard.metering")


async def main(stop: asyncio.Event) -> None:
    settings = MeteringSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    health = Health("metering", settings.host, settings.port, settings.metrics_token.get_secret_value())
    health.add_check("clickhouse", _not_yet)  # never ready before the store is open
    await health.start()
    lock = EngineLock(settings.data_dir / "clickhouse.lock")
    if settings.dsn().startswith("chdb:") and not lock.try_acquire():
        health.standby = f"the embedded engine in {settings.dsn()} is held by process {lock.holder()}"
        log.info("standby: %s; taking over when it stops", health.standby)
        if not await lock.wait(stop):
            await health.stop()
            return
        health.standby = None
        log.info("took over the embedded engine from process %s", lock.holder())
    sink = Sink(
        settings.dsn(),
        settings.retention_days,
        audit_retention_days=settings.audit_retention_days,
        cluster=settings.clickhouse_cluster,
        instance=f"metering-{socket.gethostname()}-{os.getpid()}",
    )
    await sink.open()
    install_stop_handlers(stop)  # the embedded engine replaced them while loading
    bus = Bus.for_service(settings, "metering")
    await bus.connect()
    heartbeat = await start_heartbeat(bus, "metering", settings.heartbeat_seconds)
    service = Metering(settings, bus, sink)
    await service.start()

    async def connected() -> bool:
        return bus.connected

    health.add_check("nats", connected)
    health.add_check("clickhouse", sink.ping)
    health.add_gauge(service.update_gauges)
    health.add_detail("streams", service.streams)
    if service.price_file is not None:
        price_file = service.price_file

        async def price_file_state() -> dict[str, str]:
            return {"path": str(price_file.path), "error": price_file.error}

        health.add_detail("price_file", price_file_state)
    consumers = [
        asyncio.create_task(service.consumer.run(stop)),
        asyncio.create_task(service.audit.run(stop)),
        asyncio.create_task(service.budgets.run(stop)),
        asyncio.create_task(service.reconcile_loop(stop)),
        asyncio.create_task(service.price_file_loop(stop)),
        asyncio.create_task(service.orphans.run(stop)),
    ]
    await stop.wait()
    health.draining = True
    log.info("draining: storing the batches in hand, taking no more")
    # Each consumer stores and acknowledges the batch in hand, then returns; what it has not
    # acknowledged by the deadline is redelivered to another replica (or to this one restarted).
    _, pending = await asyncio.wait(consumers, timeout=settings.drain_seconds)
    if pending:
        log.warning("drain deadline passed; unacknowledged events will be redelivered")
    for task in pending:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    heartbeat.cancel()
    await bus.close(settings.drain_seconds)
    await sink.close()
    await health.stop()
    lock.release()


async def _not_yet() -> bool:
    return False


if __name__ == "__main__":
    run_service("metering", main)
