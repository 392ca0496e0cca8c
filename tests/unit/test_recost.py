"""Re-costing on the real embedded engine: a price corrected after the fact, the stored usage
priced again as correction rows, the summary and budget spend with the difference, history
kept, a repeat of the same correction harmless, and prices loaded from a dataset."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.metering.budgets import metered_spend
from services.metering.prices import Prices
from services.metering.queries import request_log, usage_summary
from services.metering.recost import recost
from services.metering.sink import Sink
from shared.catalog import load_catalog
from shared.events import UsageEvent
from shared.messages import CatalogLoad, PriceIn, RecostQuery, RequestsQuery, UsageFilter
from shared.price_dataset import pinned


def _event(i: int, ts: float, model: str = "gpt-4o", **extra: object) -> UsageEvent:
    return UsageEvent(
        event_id=f"req_{i}",
        ts=ts,
        user="ann",
        client_key_id="key_a",
        model=model,
        provider="openai",
        endpoint="chat.completions",
        prompt_tokens=1_000_000,
        completion_tokens=100_000,
        **extra,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def _store(path: Path) -> AsyncIterator[tuple[Sink, Prices]]:
    """A store on the real embedded engine, with metering's price book over it."""
    sink = Sink(f"chdb://{path}", retention_days=30)
    await sink.open()
    try:
        prices = Prices(load_catalog(), sink)
        await prices.reload()
        yield sink, prices
    finally:
        await sink.close()


def test_a_correction_recosts_stored_usage_as_new_rows(tmp_path: Path) -> None:
    async def run() -> None:
        async with _store(tmp_path / "ch") as (sink, prices):
            now = time.time()
            events = [_event(i, now - 600 + i) for i in range(3)] + [_event(9, now - 300, model="gpt-9")]
            await sink.insert([(e, *prices.book.cost(e)) for e in events])
            before = await usage_summary(sink, UsageFilter(period="24h"))
            assert before.total_cost_usd == pytest.approx(3 * (2.5 + 1.0))  # gpt-4o at $2.50 / $10
            assert before.unpriced_requests == 1

            # gpt-4o should have cost $2 / $8 since before those requests; gpt-9 $1 / $1
            await prices.add(PriceIn(model="gpt-4o", provider="openai", input=2, output=8, effective_from=now - 3600))
            await prices.add(PriceIn(model="gpt-9", provider="openai", input=1, output=1, effective_from=now - 3600))
            window = RecostQuery(start=now - 3600, end=now + 60)
            dry = await recost(sink, prices.book, window.model_copy(update={"dry_run": True}))
            assert (dry.events_checked, dry.events_corrected) == (4, 4)
            assert (await usage_summary(sink, UsageFilter(period="24h"))).corrections_usd == 0

            report = await recost(sink, prices.book, window)
            assert report.delta_usd == pytest.approx(3 * (2.0 + 0.8 - 3.5) + (1.0 + 0.1))
            after = await usage_summary(sink, UsageFilter(period="24h"))
            assert after.total_cost_usd == pytest.approx(3 * 2.8 + 1.1)
            assert after.corrections_usd == pytest.approx(report.delta_usd)
            versions = {v.version: (v.requests, round(v.cost_usd, 9)) for v in after.by_price_version}
            assert sorted(r for r, _ in versions.values()) == [1, 3] and all(v.startswith("admin-") for v in versions)
            # The budget's metered spend sees the correction too; the raw rows keep their first cost.
            assert await metered_spend(sink, "user", "ann", now - 3600) == pytest.approx(3 * 2.8 + 1.1)
            log = await request_log(sink, RequestsQuery(period="24h"))
            assert sorted(round(e.cost_usd, 9) for e in log.data) == [0.0, 3.5, 3.5, 3.5]

            # The same correction again (after a crash midway, say) replaces its rows: no double count
            again = await recost(sink, prices.book, window.model_copy(update={"correction_id": report.correction_id}))
            assert again.events_corrected == 4
            assert (await usage_summary(sink, UsageFilter(period="24h"))).total_cost_usd == pytest.approx(3 * 2.8 + 1.1)
            # A new correction finds nothing left to do
            assert (await recost(sink, prices.book, window)).events_corrected == 0
            # Filters narrow it
            narrow = await recost(sink, prices.book, window.model_copy(update={"model": "gpt-4o", "dry_run": True}))
            assert narrow.events_checked == 3

    asyncio.run(run())


def test_a_dataset_load_changes_only_the_prices_it_changes(tmp_path: Path) -> None:
    async def run() -> None:
        async with _store(tmp_path / "ch") as (sink, prices):
            same = pinned(["anthropic"])
            unchanged = await prices.load(CatalogLoad(dataset=same.model_dump(mode="json")))
            assert unchanged.changed == [] and unchanged.unchanged > 20  # the pinned dataset: nothing to do
            newer = same.model_copy(deep=True)
            newer.providers["anthropic"]["claude-opus-4-8"].prices[-1].input = 7.5
            loaded = await prices.load(CatalogLoad(dataset=newer.model_dump(mode="json"), version="fix-1"))
            assert loaded.changed == ["anthropic/claude-opus-4-8"] and loaded.version == "fix-1"
            held = prices.book.price_at("anthropic", "claude-opus-4-8", time.time())
            assert held is not None and held.input == 7.5 and held.source == "dataset"
            in_force = prices.in_force(["openai/gpt-9"])
            assert [(p.model, p.input) for p in in_force.prices] == [("claude-opus-4-8", 7.5)]
            assert in_force.allow_unpriced == ["openai/gpt-9"]
            # Stored: a new process reads the same book
            fresh = Prices(load_catalog(), sink)
            await fresh.reload()
            again = fresh.book.price_at("anthropic", "claude-opus-4-8", time.time())
            assert again is not None and again.input == 7.5 and again.variants  # fast mode and batch kept

    asyncio.run(run())


def test_the_command_recosts_a_store_it_opens_itself(tmp_path: Path) -> None:
    """``python -m services.metering.recost`` with metering's settings, against a store no
    metering holds (the embedded engine opens in one process)."""
    store = tmp_path / "ch"

    async def fill() -> None:
        async with _store(store) as (sink, prices):
            now = time.time()
            event = _event(1, now - 60, model="gpt-9")  # unpriced when written
            await sink.insert([(event, *prices.book.cost(event))])
            await prices.add(PriceIn(model="gpt-9", provider="openai", input=1, output=1, effective_from=now - 3600))

    asyncio.run(fill())
    env = {**os.environ, "GATEWAY_CLICKHOUSE_DSN": f"chdb://{store}", "GATEWAY_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "services.metering.recost", "--from", "2020-01-01", "--to", "2100-01-01Z"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout)
    assert (report["events_checked"], report["events_corrected"]) == (1, 1)
    assert report["delta_usd"] == 1.1
