"""Reconciliation on the real embedded engine: the rollup compared with the raw events,
differences reported and repaired both ways, and the command line on a store of its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import REGISTRY

from services.metering.queries import usage_summary
from services.metering.reconcile import reconcile
from services.metering.sink import Sink
from shared.messages import UsageFilter
from tests.unit.test_sink import _event

ROOT = Path(__file__).resolve().parents[2]
_BEHIND = (
    "INSERT INTO usage_events (event_id, ts, user, model, provider, prompt_tokens, completion_tokens, "
    "total_tokens, cost_usd, price_version) SELECT concat('req_b', toString(number)), now64(3), 'behind', "
    "'gpt-4o', 'openai', 10, 5, 15, 0.001, 'v1' FROM numbers(7)"
)


def _differences() -> float | None:
    """The gauge as metering's /metrics shows it."""
    return REGISTRY.get_sample_value("switchyard_rollup_difference_groups")


def test_differences_are_found_and_repaired_both_ways(tmp_path: Path) -> None:
    async def run() -> None:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            now = dt.datetime.now(dt.UTC)
            window = (now - dt.timedelta(hours=2), now + dt.timedelta(minutes=1))
            await sink.insert([(_event(i, user="ann", ts=time.time()), 0.002, "v1") for i in range(5)])
            clean = await reconcile(sink, *window)
            assert clean.exact and clean.raw_requests == clean.rollup_requests == 5
            assert _differences() == 0

            # Rows written behind metering's back (short), and raw rows deleted by hand (over).
            await sink.query(_BEHIND, {})
            await sink.query("DELETE FROM usage_events WHERE event_id IN ('req_0', 'req_1')", {})
            found = await reconcile(sink, *window)
            assert {d.user for d in found.differences} == {"ann", "behind"}
            assert (found.raw_requests, found.rollup_requests) == (10, 5)
            assert _differences() == 2
            assert (await usage_summary(sink, UsageFilter(period="24h"))).total_requests == 5  # not repaired yet

            repaired = await reconcile(sink, *window, repair=True)
            assert repaired.repaired == 2
            assert (await reconcile(sink, *window)).exact
            summary = await usage_summary(sink, UsageFilter(period="24h"))
            assert (summary.total_requests, summary.prompt_tokens) == (10, 100)
            assert _differences() == 0
        finally:
            await sink.close()

    asyncio.run(run())


def test_the_command_reports_and_repairs(tmp_path: Path) -> None:
    store = tmp_path / "data"

    async def prepare() -> None:
        sink = Sink(f"chdb://{store / 'clickhouse'}", retention_days=30)
        await sink.open()
        try:
            await sink.query(_BEHIND, {})
        finally:
            await sink.close()

    asyncio.run(prepare())
    now = dt.datetime.now(dt.UTC)
    argv = [
        sys.executable,
        "-m",
        "services.metering.reconcile",
        "--from",
        (now - dt.timedelta(hours=1)).isoformat(),
        "--to",
        (now + dt.timedelta(minutes=5)).isoformat(),
    ]
    env = {**os.environ, "GATEWAY_DATA_DIR": str(store), "GATEWAY_NATS_URL": "nats://127.0.0.1:1"}
    checked = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1, checked.stderr  # a difference, not repaired
    report = json.loads(checked.stdout)
    assert report["exact"] is False and report["raw_requests"] == 7 and report["rollup_requests"] == 0
    fixed = subprocess.run([*argv, "--repair"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    again = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["rollup_requests"] == 7
