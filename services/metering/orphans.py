"""Requests whose edge died before they ended: billed at what they reserved.

An edge notes each request on the bus as admitted (the reservation, and by when it must have
ended) before its upstream call, and publishes its usage event when it ends. If the edge
process dies in between (SIGKILL, a lost node), the event never comes. Metering stores the
admission notes in ``usage_admitted`` and bills a request with no event from its note: the
reserved tokens at the price of its first target, flagged (``error_type`` ``edge_lost``,
``usage_estimated``), written as if stored when the request started, so that its real event,
should it still arrive (an edge's spool replayed later), replaces the bill whenever it comes.

A request is billed once its edge process is known dead (no heartbeat for three intervals,
then ``GATEWAY_ORPHAN_GRACE_SECONDS`` for its last events to be stored), or once its deadline
(the plan's total bound and a margin) has passed, whichever comes first. The bound on what is
wrong: a request its edge admitted within the publisher's batch window (5 ms) of dying has no
note and is not billed; one that ended within that window is billed at its reservation (an
upper bound) instead of its usage. docs/analytics.md, "An edge that dies mid-request".
"""

from __future__ import annotations

import asyncio
import logging
import time

from services.metering import metrics
from services.metering.periodic import every
from services.metering.prices import Prices
from services.metering.schema import EDGE_LOST
from services.metering.sink import Sink
from shared import subjects
from shared.bus import Bus, Msg
from shared.events import UsageEvent
from shared.messages import ServiceBeat

log = logging.getLogger("switchyard.metering.orphans")

_MISSED_BEATS = 3
_LOST_STATUS = 502  # what the client saw: its connection to the gateway broke


class EdgeWatch:
    """Which edge processes are alive, from their heartbeats. An edge never heard since this
    process started counts as heard at its start: a metering that starts just before an edge
    dies has not heard it, and must still find it dead."""

    def __init__(self, interval: float, now: float | None = None) -> None:
        self.interval = interval
        self.since = time.time() if now is None else now
        self.last: dict[str, float] = {}

    def heard(self, instance: str, at: float) -> None:
        self.last[instance] = max(at, self.last.get(instance, 0.0))

    def dead(self, now: float, grace: float, known: set[str] | frozenset[str] = frozenset()) -> dict[str, float]:
        """Of the instances heard and ``known`` (that admitted requests lately), those silent
        for three intervals and then ``grace`` seconds, with when they were last heard."""
        cutoff = now - _MISSED_BEATS * self.interval - grace
        last = {i: self.last.get(i, self.since) for i in set(self.last) | set(known)}
        return {i: t for i, t in last.items() if t < cutoff}


class OrphanSweeper:
    def __init__(
        self, bus: Bus, sink: Sink, prices: Prices, *, heartbeat: float, every: float, grace: float, lookback: float
    ) -> None:
        self.bus = bus
        self.sink = sink
        self.prices = prices
        self.every = every
        self.grace = grace
        self.lookback = lookback
        self.watch = EdgeWatch(heartbeat)
        self.due_checked = time.time() - lookback  # deadlines after this are still to check
        self.billed = 0
        self.swept: set[str] = set()  # instances found dead (logged once)

    async def start(self) -> None:
        await self.bus.subscribe(f"{subjects.STATUS_HEARTBEAT}.edge", self._beat)

    async def _beat(self, msg: Msg) -> None:
        try:
            beat = ServiceBeat.model_validate_json(msg.data)
        except ValueError:
            return
        self.watch.heard(beat.instance, time.time())

    async def run(self, stop: asyncio.Event) -> None:
        await every(self.every, stop, lambda: self.sweep(time.time()), "looking for requests of edges that died")

    async def sweep(self, now: float) -> int:
        """Bill what is orphaned now; returns how many requests were billed."""
        billed = 0
        known = set(await self.sink.admitting_instances(since=now - self.lookback))
        # Every sweep, as long as the dead process's admissions are within the lookback: its
        # notes may still arrive (another edge replaying its spool), and billed ones are not
        # found again. A late event of its replaces a bill in any case.
        for instance, last in self.watch.dead(now, self.grace, known).items():
            if instance not in self.swept:
                log.info("edge %s has been silent for %.0f s: billing its open requests", instance, now - last)
                self.swept.add(instance)
            found = await self.sink.orphans(instances=[instance], since=last - self.lookback)
            billed += await self._bill(found, f"edge {instance} died")
        self.swept &= known | set(self.watch.last)
        found = await self.sink.orphans(due_after=self.due_checked, due_by=now, since=now - self.lookback)
        billed += await self._bill(found, "no event by its deadline")
        self.due_checked = now
        return billed

    async def _bill(self, admitted: list[UsageEvent], why: str) -> int:
        if not admitted:
            return 0
        rows = []
        for note in admitted:
            event = note.model_copy(
                update={
                    "phase": "final",
                    "status": _LOST_STATUS,
                    "error_type": EDGE_LOST,
                    "usage_estimated": True,
                    "deadline": 0.0,
                }
            )
            rows.append((event, *self.prices.book.cost(event)))
        await self.sink.bill_orphans(rows)
        self.billed += len(rows)
        metrics.ORPHANS_BILLED.inc(len(rows))
        log.warning("billed %d request(s) at their reservation (%s)", len(rows), why)
        return len(rows)
