"""Every service process says it is alive on the bus every ``GATEWAY_HEARTBEAT_SECONDS``, and
at once when an edge asks (an edge that starts wants the list now, not in ten seconds). Edges
keep what they hear: ``GET /ai/status`` (services/edge/status.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from shared import subjects
from shared.bus import Bus, Msg
from shared.messages import ServiceBeat
from shared.version import VERSION

log = logging.getLogger("switchyard.heartbeat")


class Heartbeat:
    def __init__(
        self, bus: Bus, service: str, instance: str, interval: float, ready: Callable[[], bool] | None = None
    ) -> None:
        self.bus = bus
        self.service = service
        self.instance = instance
        self.interval = interval
        self.ready = ready or (lambda: bus.connected)
        self.started_at = time.time()
        self._now = asyncio.Event()

    async def start(self) -> None:
        async def asked(_: Msg) -> None:
            self._now.set()

        await self.bus.subscribe(subjects.STATUS_ANNOUNCE, asked)

    def beat(self) -> ServiceBeat:
        return ServiceBeat(
            service=self.service,
            instance=self.instance,
            version=VERSION,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            sent_at=time.time(),
            ready=self.ready(),
        )

    async def run(self) -> None:
        while True:
            if self.bus.connected:
                try:
                    await self.bus.publish(f"{subjects.STATUS_HEARTBEAT}.{self.service}", self.beat())
                except Exception as exc:  # the bus is away: the next beat will do
                    log.debug("heartbeat not sent: %s", exc)
            self._now.clear()
            try:
                await asyncio.wait_for(self._now.wait(), timeout=self.interval)
            except TimeoutError:
                pass


async def start_heartbeat(bus: Bus, service: str, interval: float) -> asyncio.Task[None]:
    """A bus service's heartbeat, running until the task is cancelled."""
    beat = Heartbeat(bus, service, f"{service}-{socket.gethostname()}-{os.getpid()}", interval)
    await beat.start()
    return asyncio.create_task(beat.run(), name=f"{service}-heartbeat")
