"""The ClickHouse sink on the real embedded engine (chDB)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.metering.queries import request_log, usage_summary, usage_timeseries
from services.metering.sink import Sink
from shared.events import UsageEvent
from shared.messages import RequestsQuery, TimeseriesQuery, UsageFilter


def _event(i: int, user: str = "u", ts: float | None = None) -> UsageEvent:
    return UsageEvent(
        event_id=f"req_{i}",
        ts=ts if ts is not None else time.time(),
        user=user,
        model="gpt-4o",
        provider="openai",
        prompt_tokens=10,
        completion_tokens=5,
    )


def test_insert_is_idempotent_and_summary_exact(tmp_path: Path) -> None:
    async def run() -> None:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            rows = [(_event(i), 0.001, "v1") for i in range(50)]
            assert await sink.insert(rows) == 50
            # Redelivered (whole batch, part of it, and repeats inside one batch): stored once.
            assert await sink.insert(rows) == 0
            assert await sink.insert(rows[:10] + [(_event(50), 0.001, "v1")] * 3) == 1
            old = (_event(99, ts=time.time() - 3 * 86_400), 0.5, "v1")
            assert await sink.insert([old]) == 1

            day = await usage_summary(sink, UsageFilter(period="24h"))
            assert day.total_requests == 51
            assert day.prompt_tokens == 510 and day.completion_tokens == 255
            assert abs(day.total_cost_usd - 0.051) < 1e-9
            week = await usage_summary(sink, UsageFilter(period="7d"))
            assert week.total_requests == 52
            assert (await usage_summary(sink, UsageFilter(period="7d", user="nobody"))).total_requests == 0

            # The hourly rollup holds the same totals as the raw table.
            series = await usage_timeseries(sink, TimeseriesQuery(period="7d", granularity="day"))
            assert sum(p.requests for p in series.data) == 52
            assert sum(p.prompt_tokens for p in series.data) == 520

            # The request log pages backwards through every event exactly once.
            seen: list[str] = []
            cursor = None
            while True:
                page = await request_log(sink, RequestsQuery(period="7d", limit=20, before=cursor))
                seen += [r.id for r in page.data]
                if not page.has_more:
                    break
                cursor = page.next_cursor
            assert len(seen) == len(set(seen)) == 52
        finally:
            await sink.close()

    asyncio.run(run())


def test_data_survives_reopening(tmp_path: Path) -> None:
    async def run() -> int:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            if not (await usage_summary(sink, UsageFilter(period="24h"))).total_requests:
                await sink.insert([(_event(1), 0.0, "v1")])
            return (await usage_summary(sink, UsageFilter(period="24h"))).total_requests
        finally:
            await sink.close()

    assert asyncio.run(run()) == 1
    # chDB allows one engine per process: the reopen happens in the same process, as a restart.
    assert asyncio.run(run()) == 1


def test_a_redelivered_batch_repairs_a_rollup_a_crash_left_short(tmp_path: Path) -> None:
    """A metering process killed mid-insert can leave raw rows whose rollup rows were never
    written (the cluster test saw it: 98 events stored, 91 in the summary). The redelivered
    batch finds the events stored, and the rollup is brought up to them, once."""

    async def run() -> None:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            now = time.time()
            kept = [(_event(i, user="ann", ts=now), 0.002, "v1") for i in range(3)]
            assert await sink.insert(kept) == 3
            lost = [(_event(i, user="ann", ts=now), 0.002, "v1") for i in range(3, 10)]
            lost += [(_event(i, user="bob", ts=now - 7200), 0.002, "v1") for i in range(10, 12)]
            assert await sink.insert(lost) == 9
            # The crash: the rollup rows of the second batch are gone, the raw rows stay.
            await sink.query("TRUNCATE TABLE usage_hourly", {})
            assert await sink.insert(kept) == 0  # an earlier batch redelivered: repairs its hour
            assert await sink.insert([*lost, (_event(12, user="ann", ts=now), 0.002, "v1")]) == 1

            ann = await usage_summary(sink, UsageFilter(period="24h", user="ann"))
            assert (ann.total_requests, ann.prompt_tokens, ann.completion_tokens) == (11, 110, 55)
            assert abs(ann.total_cost_usd - 0.022) < 1e-9
            bob = await usage_summary(sink, UsageFilter(period="24h", user="bob"))
            assert (bob.total_requests, bob.prompt_tokens) == (2, 20)
            # A further redelivery finds nothing to repair: nothing is counted twice.
            assert await sink.insert(lost) == 0
            assert (await usage_summary(sink, UsageFilter(period="24h"))).total_requests == 13
        finally:
            await sink.close()

    asyncio.run(run())
