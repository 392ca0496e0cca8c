"""Schema migrations on the real embedded engine: a store made by the previous release (its
statements, taken from git history, in fixtures/metering_schema_0_1.sql) is upgraded in place;
migrations run once; retention follows its setting at every start."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import clickhouse_connect

from services.metering.migrations import LATEST
from services.metering.queries import usage_summary
from services.metering.sink import Sink
from shared.messages import UsageFilter
from tests.unit.test_sink import _event

OLD_DDL = Path(__file__).parent / "fixtures" / "metering_schema_0_1.sql"


def _old_store(path: Path) -> None:
    """The 0.1.0 schema with what it held after a NATS crash: 5 events, 2 of them stored twice
    (a lookup skipped), so its summing view counted 7."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    try:
        for statement in OLD_DDL.read_text().split("\n;\n"):
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if body:
                client.command(body)
        now = dt.datetime.now(dt.UTC)
        columns = ["event_id", "ts", "user", "model", "provider", "prompt_tokens", "completion_tokens", "total_tokens"]
        rows = [[f"req_{i}", now, "ann", "gpt-4o", "openai", 10, 5, 15] for i in range(5)]
        client.insert("usage_events", rows, column_names=columns)
        client.insert("usage_events", rows[:2], column_names=columns)
        client.insert(
            "audit_events",
            [["aud_1", now, "admin", "", "key.create", "k1", 201, "edge", "e1"]],
            column_names=["event_id", "ts", "actor", "actor_user", "action", "target", "status", "source", "instance"],
        )
        assert client.query("SELECT sum(requests) FROM usage_hourly").result_rows[0][0] == 7
    finally:
        client.close()


def test_a_previous_release_store_is_upgraded_in_place(tmp_path: Path) -> None:
    store = tmp_path / "ch"
    _old_store(store)

    async def run() -> None:
        sink = Sink(f"chdb://{store}", retention_days=60, audit_retention_days=90)
        await sink.open()
        try:
            assert sink.migrated == [1, 2, 3, 4]
            columns = await sink.query(
                "SELECT table, name FROM system.columns WHERE database = currentDatabase() AND name IN "
                "('spec', 'source', 'cache_write_1h_tokens', 'price_context')",
                {},
            )
            assert set(columns) >= {
                ("prices", "spec"),
                ("prices", "source"),
                ("usage_events", "cache_write_1h_tokens"),
                ("usage_events", "price_context"),
            }
            tables = dict(
                await sink.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()", {})
            )
            assert tables["usage_hourly"] == "View" and tables["usage_hourly_data"] == "ReplacingMergeTree"
            assert "usage_hourly_mv" not in tables
            # The rollup was rebuilt from the deduplicated events: 5, not the 7 it held.
            summary = await usage_summary(sink, UsageFilter(period="24h"))
            assert (summary.total_requests, summary.prompt_tokens) == (5, 50)
            assert (await sink.query("SELECT count() FROM audit_events", {}))[0][0] == 1  # kept
            # The retention settings are in force on the old tables, audit_events included.
            ttl = dict(await sink.query("SELECT name, engine_full FROM system.tables", {}))
            assert "toIntervalDay(60)" in ttl["usage_events"] and "toIntervalDay(60)" in ttl["usage_hourly_data"]
            assert "toIntervalDay(90)" in ttl["audit_events"]
            versions = await sink.query("SELECT version, applied_by FROM schema_migrations FINAL ORDER BY version", {})
            assert [v for v, _ in versions] == list(range(1, LATEST + 1))
            # New events go on being counted once.
            await sink.insert([(_event(5, user="ann", ts=time.time()), 0.0, "v1")])
            assert (await usage_summary(sink, UsageFilter(period="24h"))).total_requests == 6
        finally:
            await sink.close()

        # A restart applies nothing again; a changed retention is applied.
        sink = Sink(f"chdb://{store}", retention_days=45, audit_retention_days=90)
        await sink.open()
        try:
            assert sink.migrated == []
            ttl = dict(await sink.query("SELECT name, engine_full FROM system.tables", {}))
            assert "toIntervalDay(45)" in ttl["usage_events"] and "toIntervalDay(90)" in ttl["audit_events"]
            assert (await usage_summary(sink, UsageFilter(period="24h"))).total_requests == 6
        finally:
            await sink.close()

    asyncio.run(run())
