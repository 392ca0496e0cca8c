"""The ClickHouse schema in both forms: one server (run on the embedded engine elsewhere in
the suite) and ``ON CLUSTER`` with Replicated tables and Distributed tables over them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from services.metering.schema import (
    ADMITTED_TABLE,
    AUDIT_TABLE,
    HOURLY_DATA,
    HOURLY_TABLE,
    MIGRATIONS_TABLE,
    PRICES_TABLE,
    USAGE_TABLE,
    added_columns,
    hourly_view,
    rollup_refresh,
    table_ddl,
)
from services.metering.sink import Sink

TABLES = (USAGE_TABLE, HOURLY_DATA, PRICES_TABLE, AUDIT_TABLE, ADMITTED_TABLE, MIGRATIONS_TABLE)


def test_single_server_form_has_no_cluster_parts() -> None:
    statements = [s for t in TABLES for s in table_ddl(t, 400, 90)] + added_columns() + [hourly_view()]
    text = "\n".join(statements)
    assert "ON CLUSTER" not in text and "Replicated" not in text and "Distributed" not in text
    assert [s.split()[5] for s in statements if s.startswith("CREATE TABLE")] == list(TABLES)
    hourly = table_ddl(HOURLY_DATA, 400, 90)[0]
    assert "ENGINE = ReplacingMergeTree(requests)" in hourly and "INTERVAL 400 DAY" in hourly
    assert "INTERVAL 90 DAY" in table_ddl(AUDIT_TABLE, 400, 90)[0]
    assert f"FROM {HOURLY_DATA} FINAL" in hourly_view()
    # The rollup is recomputed from the deduplicated events, never summed from inserts.
    assert f"INSERT INTO {HOURLY_DATA} (" in rollup_refresh("1") and f"FROM {USAGE_TABLE} FINAL" in rollup_refresh("1")


def test_cluster_form_replicates_each_table_and_distributes_over_it() -> None:
    for table in TABLES:
        local, distributed = table_ddl(table, 30, 30, "prod")
        assert local.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER prod (")
        engine = re.search(
            r"ENGINE = (Replicated\w+)\('/clickhouse/tables/\{shard\}/\{database\}/(\w+)', '\{replica\}'", local
        )
        assert engine and engine.group(2) == f"{table}_local"
        assert distributed.startswith(f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER prod AS {table}_local")
        assert f"ENGINE = Distributed(prod, currentDatabase(), {table}_local, " in distributed
    usage_local, usage = table_ddl(USAGE_TABLE, 30, 30, "prod")
    assert "ReplicatedReplacingMergeTree(" in usage_local and ", inserted_at)" in usage_local  # dedup kept
    assert "INTERVAL 30 DAY" in usage_local
    # Events are sharded by id, so an event and its repeats fold on one shard; rollup rows by
    # user, so the versions of a group meet on one shard too.
    assert "cityHash64(event_id))" in usage
    hourly_local, hourly = table_ddl(HOURLY_DATA, 30, 30, "prod")
    assert ", requests)" in hourly_local and "cityHash64(user))" in hourly
    assert hourly_view("prod").startswith(f"CREATE VIEW IF NOT EXISTS {HOURLY_TABLE} ON CLUSTER prod AS")
    assert [s.split()[2] for s in added_columns("prod")] == [
        f"{USAGE_TABLE}_local",
        USAGE_TABLE,
        f"{PRICES_TABLE}_local",
        PRICES_TABLE,
    ]


def test_cluster_name_must_be_an_identifier() -> None:
    with pytest.raises(ValueError, match="GATEWAY_CLICKHOUSE_CLUSTER"):
        table_ddl(USAGE_TABLE, 30, 30, "prod; DROP TABLE usage_events")


def test_single_server_form_runs_on_the_embedded_engine(tmp_path: Path) -> None:
    async def run() -> list[tuple[object, ...]]:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            return await sink.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()", {})
        finally:
            await sink.close()

    tables = dict(asyncio.run(run()))
    assert tables[USAGE_TABLE] == "ReplacingMergeTree"
    assert tables[HOURLY_DATA] == "ReplacingMergeTree"
    assert tables[HOURLY_TABLE] == "View"
    assert "usage_hourly_mv" not in tables
