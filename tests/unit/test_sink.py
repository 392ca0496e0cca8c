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


def test_the_rollup_equals_the_deduplicated_events_whatever_was_stored_twice(tmp_path: Path) -> None:
    """Repeats the lookup never saw (a NATS crash loses acks, and their messages come back as
    first deliveries, so the insert skips its lookup; the issue saw 2,016 requests in the
    rollup against 2,000 events) reach the raw table, which folds them; the rollup is computed
    from the folded events, so it does not count them either."""

    async def run() -> None:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            now = time.time()
            batch = [(_event(i, user="ann", ts=now), 0.002, "v1") for i in range(10)]
            batch += [(_event(i, user="bob", ts=now - 7200), 0.002, "v1") for i in range(10, 12)]
            assert await sink.insert(batch, check=set()) == 12
            assert await sink.insert(batch[3:], check=set()) == 9  # not looked up: stored again
            assert await sink.insert([*batch[:2], (_event(12, user="ann", ts=now), 0.002, "v1")], check=set()) == 3
            assert sink.lookups == 0

            raw = await sink.query("SELECT count() FROM usage_events", {})
            assert raw[0][0] == 24  # the repeats are there, until a merge folds them
            ann = await usage_summary(sink, UsageFilter(period="24h", user="ann"))
            assert (ann.total_requests, ann.prompt_tokens, ann.completion_tokens) == (11, 110, 55)
            assert abs(ann.total_cost_usd - 0.022) < 1e-9
            bob = await usage_summary(sink, UsageFilter(period="24h", user="bob"))
            assert (bob.total_requests, bob.prompt_tokens) == (2, 20)
            series = await usage_timeseries(sink, TimeseriesQuery(period="24h", granularity="hour"))
            assert sum(p.requests for p in series.data) == 13
            # A plain sum() over the documented view, as a user's SQL or Grafana writes it.
            hourly = await sink.query("SELECT sum(requests), sum(prompt_tokens) FROM usage_hourly", {})
            assert hourly[0] == (13, 130)
        finally:
            await sink.close()

    asyncio.run(run())


def test_a_late_refresh_of_fewer_events_does_not_replace_a_newer_one(tmp_path: Path) -> None:
    """Two metering replicas insert into one group at once: the refresh of the one that read
    before the other's insert may be written last. The group keeps the row that counted more
    events (its version is ``requests``), so it is still exact; and a batch whose refresh a
    crash prevented is refreshed when it is redelivered."""

    async def run() -> None:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            now = time.time()
            first = [(_event(i, user="ann", ts=now), 0.002, "v1") for i in range(3)]
            second = [(_event(i, user="ann", ts=now), 0.002, "v1") for i in range(3, 8)]
            assert await sink.insert(first) == 3
            stale = await sink.query(
                "SELECT hour, user, client_key_id, model, provider, requests, errors, prompt_tokens, "
                "completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, total_tokens, cost_usd "
                "FROM usage_hourly",
                {},
            )
            assert await sink.insert(second) == 5
            # The other replica's refresh, read before ``second`` was stored, written now.
            await sink.query(
                "INSERT INTO usage_hourly_data SELECT * FROM "
                "(SELECT {h:DateTime('UTC')}, {u:String}, '', 'gpt-4o', 'openai', 3, 0, 30, 15, 0, 0, 0, 45, 0.006)",
                {"h": stale[0][0], "u": "ann"},
            )
            ann = await usage_summary(sink, UsageFilter(period="24h", user="ann"))
            assert (ann.total_requests, ann.prompt_tokens) == (8, 80)

            # A crash after the raw insert, before the refresh: the rollup is short until the
            # batch is redelivered, and the redelivery (found stored) refreshes it.
            crashed = [(_event(i, user="cy", ts=now), 0.002, "v1") for i in range(20, 24)]
            await sink.query(
                "INSERT INTO usage_events (event_id, ts, user, model, provider, prompt_tokens, completion_tokens, "
                "total_tokens, cost_usd, price_version) SELECT concat('req_', toString(number)), now64(3), 'cy', "
                "'gpt-4o', 'openai', 10, 5, 15, 0.002, 'v1' FROM numbers(20, 4)",
                {},
            )
            assert (await usage_summary(sink, UsageFilter(period="24h", user="cy"))).total_requests == 0
            assert await sink.insert(crashed) == 0
            cy = await usage_summary(sink, UsageFilter(period="24h", user="cy"))
            assert (cy.total_requests, cy.prompt_tokens) == (4, 40)
        finally:
            await sink.close()

    asyncio.run(run())
