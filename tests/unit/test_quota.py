"""Edges sharing one counter over a real nats-server (services/edge/quota.py): a refused edge
gets back what another edge holds free, even when that edge is growing its lease just then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from services.edge.quota import Lease, Quotas
from shared.bus import Bus
from shared.messages import QuotaReclaim, QuotaReturned
from tests.servers import NatsServer

T = TypeVar("T")
BUCKET = "test_rate"


class _Edge(Quotas):
    """An edge whose counter writes can be held after they reached the server and before the
    edge has taken them into account: the moment a refill is most in the way."""

    def __init__(self, bus: Bus, name: str) -> None:
        super().__init__(bus, name, lease_seconds=15, fraction=0.25, idle_return=30, timeout=5)
        self.hold: asyncio.Event | None = None  # set: writes wait for it after landing
        self.written = asyncio.Event()  # a held write has landed
        self.asked = asyncio.Event()  # another edge, refused, asked this one for its free part

    async def give_back(self, request: QuotaReclaim) -> QuotaReturned:
        self.asked.set()
        return await super().give_back(request)

    async def _io(self, step: Awaitable[T]) -> T:
        name = getattr(step, "__name__", "")
        done = await super()._io(step)
        if self.hold is not None and name == "update":
            self.written.set()
            await self.hold.wait()
        return done


def _edges(tmp_path: Path, test: Callable[[_Edge, _Edge], Awaitable[None]]) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()

    async def run() -> None:
        buses = [Bus(nats.url, f"edge-{name}") for name in ("a", "b")]
        for bus in buses:
            await bus.connect(deadline=10)
        await buses[0].kv(BUCKET, create=True)
        edges = [_Edge(bus, f"edge-{name}") for bus, name in zip(buses, ("a", "b"), strict=True)]
        for edge in edges:
            await edge.start()
        try:
            await test(*edges)
        finally:
            for bus in buses:
                await bus.close()

    try:
        asyncio.run(run())
    finally:
        nats.stop()


def _slots(quotas: Quotas) -> Lease:
    return quotas.lease(BUCKET, "par.key.k1", integral=True, expiring=True)


async def _refilled(lease: Lease) -> None:
    """Let the refill the last take started finish."""
    if lease.refill is not None:
        await lease.refill


def test_a_refused_edge_gets_the_slots_another_edge_holds_free(tmp_path: Path) -> None:
    limit = 3

    async def test(a: _Edge, b: _Edge) -> None:
        mine, theirs = _slots(a), _slots(b)
        for _ in range(limit):
            assert await a.take(mine, 1, limit)
            await _refilled(mine)
        assert not await a.take(mine, 1, limit)  # every slot is in flight on edge a
        for _ in range(limit):
            Quotas.settle(mine, 1, 0)
        # Edge a's requests have ended and its slots sit free in its lease: edge b gets them.
        assert await b.take(theirs, 1, limit)
        assert await b.take(theirs, 1, limit)
        assert await b.take(theirs, 1, limit)
        assert not await b.take(theirs, 1, limit)
        assert (mine.avail, mine.reserved, theirs.reserved) == (0, 0, limit)

    _edges(tmp_path, test)


def test_a_lease_being_grown_when_another_edge_asks_is_handed_back_too(tmp_path: Path) -> None:
    limit = 2

    async def test(a: _Edge, b: _Edge) -> None:
        mine, theirs = _slots(a), _slots(b)
        # Edge a admits a request; running low, it grows its lease in the background. That
        # write has taken the last slot on the server but edge a has not counted it yet when
        # edge b is refused and asks edge a for its free part.
        a.hold = asyncio.Event()
        assert await a.take(mine, 1, limit)
        await a.written.wait()
        assert mine.avail == 0 and mine.refill is not None
        asked = asyncio.create_task(b.take(theirs, 1, limit))
        await a.asked.wait()
        a.hold.set()
        assert await asked, "edge b was refused though edge a held a slot it did not use"
        await _refilled(mine)
        assert (mine.avail, mine.reserved, theirs.reserved) == (0, 1, 1)

    _edges(tmp_path, test)
