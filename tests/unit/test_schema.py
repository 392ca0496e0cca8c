"""The ClickHouse schema in both forms: one server (run on the embedded engine elsewhere in
the suite) and ``ON CLUSTER`` with Replicated tables and Distributed tables over them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.metering.schema import AUDIT_TABLE, HOURLY_TABLE, HOURLY_VIEW, PRICES_TABLE, USAGE_TABLE, ddl
from services.metering.sink import Sink

TABLES = (USAGE_TABLE, HOURLY_TABLE, PRICES_TABLE, AUDIT_TABLE)


def test_single_server_form_has_no_cluster_parts() -> None:
    statements = ddl(400)
    text = "\n".join(statements)
    assert "ON CLUSTER" not in text and "Replicated" not in text and "Distributed" not in text
    assert [s.split()[5] for s in statements if s.startswith("CREATE TABLE")] == list(TABLES)
    assert f"TO {HOURLY_TABLE} AS" in statements[-1] and f"FROM {USAGE_TABLE}\n" in statements[-1]


def test_cluster_form_replicates_each_table_and_distributes_over_it() -> None:
    statements = ddl(30, "prod")
    for table in TABLES:
        local = next(s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local "))
        assert " ON CLUSTER prod (" in local
        engine = re.search(
            r"ENGINE = (Replicated\w+)\('/clickhouse/tables/\{shard\}/\{database\}/(\w+)', '\{replica\}'", local
        )
        assert engine and engine.group(2) == f"{table}_local"
        distributed = next(s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {table} "))
        assert f"ON CLUSTER prod AS {table}_local" in distributed
        assert f"ENGINE = Distributed(prod, currentDatabase(), {table}_local, " in distributed
    usage_local = next(s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {USAGE_TABLE}_local"))
    assert "ReplicatedReplacingMergeTree(" in usage_local and ", inserted_at)" in usage_local  # dedup kept
    assert "INTERVAL 30 DAY" in usage_local
    # Events are sharded by id, so an event and its repeats fold on one shard.
    assert "cityHash64(event_id))" in next(
        s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {USAGE_TABLE} ")
    )
    view = statements[-1]
    assert view.startswith(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {HOURLY_VIEW} ON CLUSTER prod TO {HOURLY_TABLE}_local"
    )
    assert f"FROM {USAGE_TABLE}_local\n" in view


def test_cluster_name_must_be_an_identifier() -> None:
    with pytest.raises(ValueError, match="GATEWAY_CLICKHOUSE_CLUSTER"):
        ddl(30, "prod; DROP TABLE usage_events")


def test_single_server_form_runs_on_the_embedded_engine(tmp_path: Path) -> None:
    import asyncio

    async def run() -> list[tuple[object, ...]]:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            return await sink.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()", {})
        finally:
            await sink.close()

    tables = dict(asyncio.run(run()))
    assert tables[USAGE_TABLE] == "ReplacingMergeTree"
    assert tables[HOURLY_TABLE] == "SummingMergeTree"
    assert tables[HOURLY_VIEW] == "MaterializedView"
