"""What this edge sees of each target, reported to the router every interval (the report is
also the edge's heartbeat: the router confirms admin changes with the edges it hears).

Recording is a dictionary update on the request path; the publishing is off it."""

from __future__ import annotations

import asyncio
import logging
import time

from shared import subjects
from shared.bus import Bus
from shared.messages import HealthReport, TargetOutcomes

log = logging.getLogger("switchyard.edge.health")


class HealthReporter:
    def __init__(self, bus: Bus, instance: str, interval: float) -> None:
        self.bus = bus
        self.instance = instance
        self.interval = interval
        self._pending: dict[str, TargetOutcomes] = {}
        self._left = False
        self._probed: dict[str, float] = {}  # half-open target -> when this edge last probed it

    def succeeded(self, target: str, ttft_ms: float) -> None:
        seen = self._pending.get(target) or self._pending.setdefault(target, TargetOutcomes())
        seen.ok += 1
        seen.ttft_ms_sum += ttft_ms
        seen.ttft_count += 1

    def failed(self, target: str, why: str) -> None:
        seen = self._pending.get(target) or self._pending.setdefault(target, TargetOutcomes())
        seen.failed += 1
        seen.last_failure = why

    def may_probe(self, target: str) -> bool:
        """Whether this request may be a half-open target's probe: one per report interval
        per edge, so a recovering target gets a trickle, not the whole load."""
        now = time.monotonic()
        if now - self._probed.get(target, 0.0) < self.interval:
            return False
        self._probed[target] = now
        return True

    async def flush(self, *, leaving: bool = False) -> None:
        report = HealthReport(instance=self.instance, targets=self._pending, leaving=leaving)
        self._pending = {}
        await self.bus.publish(subjects.ROUTER_HEALTH, report)

    async def leave(self) -> None:
        """The last report: this edge stops, the router no longer waits for its confirmations."""
        self._left = True  # no heartbeat after the goodbye
        try:
            await self.flush(leaving=True)
        except Exception as exc:
            log.debug("could not say goodbye to the router: %s", exc)

    async def run(self) -> None:
        while not self._left:
            try:
                await self.flush()
            except Exception as exc:  # the bus is down: these outcomes are lost, the next ones count
                log.debug("could not report target health: %s", exc)
            await asyncio.sleep(self.interval)
