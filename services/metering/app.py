"""The metering service: usage events from JetStream into ClickHouse, and usage queries."""

from __future__ import annotations

import logging
import os
import socket

from pydantic import BaseModel

from services.metering.consumer import UsageConsumer
from services.metering.pricing import Pricer
from services.metering.settings import MeteringSettings
from services.metering.sink import Sink
from services.metering.summary import usage_summary
from shared import subjects
from shared.bus import Bus
from shared.catalog import load_catalog
from shared.errors import UNAVAILABLE, GatewayError
from shared.messages import Ping, UsageSummary, UsageSummaryQuery

log = logging.getLogger("switchyard.metering")


class Empty(BaseModel):
    pass


class Metering:
    def __init__(self, settings: MeteringSettings, bus: Bus, sink: Sink) -> None:
        self.settings = settings
        self.bus = bus
        self.sink = sink
        self.instance = f"metering-{socket.gethostname()}-{os.getpid()}"
        self.consumer = UsageConsumer(
            bus, sink, Pricer(load_catalog()), batch_size=settings.batch_size, batch_wait=settings.batch_wait
        )

    async def start(self) -> None:
        await self.consumer.setup()
        await self.bus.serve(subjects.METERING_PING, subjects.QUEUE_METERING, Empty, self.ping)
        await self.bus.serve(subjects.USAGE_SUMMARY, subjects.QUEUE_METERING, UsageSummaryQuery, self.summary)

    async def ping(self, _: Empty) -> Ping:
        return Ping(service="metering", instance=self.instance)

    async def summary(self, query: UsageSummaryQuery) -> UsageSummary:
        try:
            return await usage_summary(self.sink, query)
        except GatewayError:
            raise
        except Exception as exc:
            log.warning("usage query failed: %s", exc)
            raise GatewayError(UNAVAILABLE, "usage store unavailable") from exc
