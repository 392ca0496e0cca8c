"""Requests whose edge died before they ended, on the real embedded engine: billed once at
their reservation and flagged; an event that still comes replaces the bill, in either order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from services.metering.orphans import EdgeWatch, OrphanSweeper
from services.metering.prices import Prices
from services.metering.queries import request_log, usage_summary
from services.metering.sink import Sink
from shared.catalog import load_catalog
from shared.events import UsageEvent
from shared.messages import RequestsQuery, UsageFilter


def _note(i: int, instance: str = "edge-a-1", deadline: float | None = None) -> UsageEvent:
    now = time.time()
    return UsageEvent(
        event_id=f"req_{i}",
        ts=now,
        user="ann",
        model="gpt-4o",
        provider="openai",
        endpoint="chat.completions",
        stream=True,
        status=0,
        prompt_tokens=100,
        completion_tokens=1000,  # the reservation
        usage_estimated=True,
        edge_instance=instance,
        phase="admitted",
        deadline=deadline if deadline is not None else now + 3720,
    )


def _final(note: UsageEvent, completion: int = 7) -> UsageEvent:
    return note.model_copy(
        update={"phase": "final", "status": 200, "completion_tokens": completion, "usage_estimated": False}
    )


@contextlib.asynccontextmanager
async def _sweeper(tmp_path: Path, *, heartbeat: float, grace: float) -> AsyncIterator[tuple[Sink, OrphanSweeper]]:
    """A store on the real engine and a sweeper over it. A sweep reads only the store; the bus
    is for hearing heartbeats (``start``), which these tests tell the watch themselves."""
    sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
    await sink.open()
    prices = Prices(load_catalog(), sink)
    sweeper = OrphanSweeper(None, sink, prices, heartbeat=heartbeat, every=0, grace=grace, lookback=7200)  # type: ignore[arg-type]
    try:
        yield sink, sweeper
    finally:
        await sink.close()


def test_an_edge_that_died_has_its_open_requests_billed_once_at_their_reservation(tmp_path: Path) -> None:
    async def run() -> None:
        async with _sweeper(tmp_path, heartbeat=1.0, grace=0) as (sink, sweeper):
            prices = sweeper.prices
            notes = [_note(i) for i in range(4)]
            await sink.insert_admitted(notes)
            await sink.insert([(_final(notes[0]), *prices.book.cost(_final(notes[0])))])
            now = time.time()
            sweeper.watch.heard("edge-a-1", now - 10)  # silent for ten intervals: dead
            sweeper.watch.heard("edge-b-1", now)  # alive
            await sink.insert_admitted([_note(9, instance="edge-b-1")])  # open on a live edge: left alone

            assert await sweeper.sweep(now) == 3
            assert await sweeper.sweep(now + 1) == 0  # never twice
            # A note of the dead edge that arrives late (its spool replayed elsewhere) is billed too.
            await sink.insert_admitted([_note(5)])
            assert await sweeper.sweep(now + 2) == 1
            summary = await usage_summary(sink, UsageFilter(period="24h", user="ann"))
            assert summary.total_requests == 5 and summary.total_errors == 4
            assert summary.completion_tokens == 7 + 4 * 1000  # billed at the reservation
            per = prices.book.cost(_final(notes[1], completion=1000))[0]
            assert abs(summary.total_cost_usd - (4 * per + prices.book.cost(_final(notes[0]))[0])) < 1e-12
            log = await request_log(sink, RequestsQuery(period="24h", user="ann", limit=10))
            lost = {r.id for r in log.data if r.error_type == "edge_lost"}
            assert lost == {"req_1", "req_2", "req_3", "req_5"}
            assert all(r.usage_estimated for r in log.data if r.id in lost)

            # The real event of one still comes (a spool replayed): it replaces the bill.
            late = _final(notes[1], completion=11)
            assert await sink.insert([(late, *prices.book.cost(late))]) == 1
            summary = await usage_summary(sink, UsageFilter(period="24h", user="ann"))
            assert summary.total_requests == 5 and summary.total_errors == 3
            assert summary.completion_tokens == 7 + 11 + 3 * 1000

            # A bill written after the event (two replicas, a slow sweep) does not replace it.
            await sink.bill_orphans([(_final(notes[0], completion=1000), 0.5, "v")])
            summary = await usage_summary(sink, UsageFilter(period="24h", user="ann"))
            assert summary.completion_tokens == 7 + 11 + 3 * 1000

    asyncio.run(run())


def test_a_request_past_its_deadline_is_billed_whatever_its_edge(tmp_path: Path) -> None:
    async def run() -> None:
        async with _sweeper(tmp_path, heartbeat=10.0, grace=60) as (sink, sweeper):
            now = time.time()
            await sink.insert_admitted([_note(1, deadline=now - 5), _note(2, deadline=now + 600)])
            sweeper.watch.heard("edge-a-1", now)
            assert await sweeper.sweep(now) == 1
            ids = {r.id for r in (await request_log(sink, RequestsQuery(period="24h", user="ann"))).data}
            assert ids == {"req_1"}

    asyncio.run(run())


def test_an_edge_is_dead_after_three_missed_beats_and_the_grace() -> None:
    watch = EdgeWatch(interval=10.0, now=0.0)
    watch.heard("a", 100.0)
    assert watch.dead(129.0, grace=5.0) == {}
    assert watch.dead(136.0, grace=5.0) == {"a": 100.0}
    # One that admitted requests but was never heard since this process started (it died
    # just before, or just after a metering that had not heard it yet took over) counts as
    # heard at the start.
    assert watch.dead(30.0, grace=5.0, known={"b"}) == {}
    assert watch.dead(36.0, grace=5.0, known={"b"}) == {"b": 0.0}


def test_a_metering_that_never_heard_the_dead_edge_still_bills_its_requests(tmp_path: Path) -> None:
    async def run() -> None:
        async with _sweeper(tmp_path, heartbeat=1.0, grace=0) as (sink, sweeper):
            await sink.insert_admitted([_note(1, instance="edge-gone-1"), _note(2, instance="edge-gone-1")])
            now = time.time()
            assert await sweeper.sweep(sweeper.watch.since + 1) == 0  # not long enough to know
            assert await sweeper.sweep(max(now, sweeper.watch.since) + 4) == 2
            assert await sweeper.sweep(max(now, sweeper.watch.since) + 5) == 0

    asyncio.run(run())
