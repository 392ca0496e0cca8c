"""Versioned, idempotent migrations of the ClickHouse schema (docs/analytics.md, "Schema").

Every metering process runs :func:`migrate` when it opens the store. Each migration is applied
once and recorded in ``schema_migrations``; each is also safe to run again, or by two replicas
starting at once (``IF [NOT] EXISTS`` statements, and a rollup rebuild whose rows are versioned
by what they counted, so a second rebuild replaces the first with the same rows). Retention is
not a migration but a setting: every start brings each table's TTL to the configured days.

A store made before migrations existed (release 0.1.0: its statements are in
tests/unit/fixtures/metering_schema_0_1.sql) has no ``schema_migrations`` and is upgraded by
the same steps: its tables are kept, missing columns added, its hourly rollup (a
SummingMergeTree fed by a materialized view, which counted a redelivered event twice) is
replaced by one rebuilt from the deduplicated raw events.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from services.metering.schema import (
    ADMITTED_TABLE,
    AUDIT_TABLE,
    CORRECTIONS_TABLE,
    HOURLY_DATA,
    HOURLY_TABLE,
    LEGACY_HOURLY_VIEW,
    MIGRATIONS_TABLE,
    PRICES_TABLE,
    RETENTION,
    USAGE_TABLE,
    added_columns,
    hourly_view,
    local_name,
    on_cluster,
    rollup_refresh,
    table_ddl,
)

log = logging.getLogger("switchyard.metering.migrations")


class Store(Protocol):
    """What a migration needs of a ClickHouse client (clickhouse-connect's, in sink.py)."""

    def command(self, cmd: str, parameters: Any = None, *, settings: Any = None) -> Any: ...

    def query(self, query: str, parameters: Any = None, *, settings: Any = None) -> Any: ...


@dataclass(frozen=True)
class Target:
    """The store being migrated and the settings its tables follow."""

    store: Store
    retention_days: int
    audit_retention_days: int
    cluster: str | None
    applied_by: str
    settings: dict[str, Any]

    def run(self, statement: str) -> None:
        self.store.command(statement, settings=self.settings or None)

    def create(self, table: str) -> None:
        for statement in table_ddl(table, self.retention_days, self.audit_retention_days, self.cluster):
            self.run(statement)

    def engine(self, table: str) -> str | None:
        rows = self.store.query(
            "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
            parameters={"name": table},
        ).result_rows
        return str(rows[0][0]) if rows else None


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Target], None]


def _base_tables(t: Target) -> None:
    for table in (USAGE_TABLE, PRICES_TABLE, AUDIT_TABLE):
        t.create(table)
    for statement in added_columns(t.cluster):
        t.run(statement)


def _exact_hourly_rollup(t: Target) -> None:
    on = on_cluster(t.cluster)
    # First stop the old view adding up inserts, then rebuild from everything stored.
    t.run(f"DROP VIEW IF EXISTS {LEGACY_HOURLY_VIEW}{on} SYNC")
    for name in [HOURLY_TABLE] + ([local_name(HOURLY_TABLE, t.cluster)] if t.cluster else []):
        engine = t.engine(name)
        if engine is not None and engine != "View":  # 0.1.0's SummingMergeTree: derived, rebuilt below
            t.run(f"DROP TABLE IF EXISTS {name}{on} SYNC")
    t.create(HOURLY_DATA)
    t.run(hourly_view(t.cluster))
    t.run(rollup_refresh("1"))


def _admitted_requests(t: Target) -> None:
    t.create(ADMITTED_TABLE)


def _price_variants(t: Target) -> None:
    for statement in added_columns(t.cluster):
        t.run(statement)
    t.create(CORRECTIONS_TABLE)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "usage_events, prices and audit_events with every column", _base_tables),
    Migration(
        2, "usage_hourly recomputed from the deduplicated events (replaces the summing view)", _exact_hourly_rollup
    ),
    Migration(3, "usage_admitted: requests as admitted, billed from it if their edge dies", _admitted_requests),
    Migration(
        4,
        "prices keep tiers, variants and windows; events their 1-hour cache writes and kind; cost_corrections",
        _price_variants,
    ),
)
LATEST = MIGRATIONS[-1].version


def applied(store: Store) -> set[int]:
    rows = store.query(f"SELECT DISTINCT version FROM {MIGRATIONS_TABLE} FINAL").result_rows
    return {int(r[0]) for r in rows}


def migrate(t: Target) -> list[int]:
    """Apply what the store has not had, then its retention; returns the versions applied."""
    t.create(MIGRATIONS_TABLE)
    done = applied(t.store)
    newer = sorted(v for v in done if v > LATEST)
    if newer:
        # A newer release migrated this store: its schema is a superset this one can write.
        log.warning("the ClickHouse schema is at version %d, newer than this release's %d", newer[-1], LATEST)
    ran = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        log.info("ClickHouse schema: applying migration %d (%s)", migration.version, migration.description)
        migration.apply(t)
        t.store.command(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, description, applied_at, applied_by) "
            "VALUES ({v:UInt32}, {d:String}, {at:DateTime64(3, 'UTC')}, {by:String})",
            parameters={
                "v": migration.version,
                "d": migration.description,
                "at": dt.datetime.now(dt.UTC),
                "by": t.applied_by,
            },
            settings=t.settings or None,
        )
        ran.append(migration.version)
    apply_retention(t)
    return ran


_TTL_DAYS = re.compile(r"\bTTL\s+.*?toIntervalDay\((\d+)\)")


def apply_retention(t: Target) -> list[str]:
    """Bring each table's TTL to the configured days (ALTER ... MODIFY TTL where it differs);
    returns the tables changed. ClickHouse rewrites the TTL of stored parts in the background."""
    changed = []
    for table, expression, which in RETENTION:
        days = t.retention_days if which == "usage" else t.audit_retention_days
        stored = local_name(table, t.cluster)
        rows = t.store.query(
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
            parameters={"name": stored},
        ).result_rows
        if not rows:
            continue
        found = _TTL_DAYS.search(str(rows[0][0]))
        if found and int(found.group(1)) == days:
            continue
        t.run(f"ALTER TABLE {stored}{on_cluster(t.cluster)} MODIFY TTL {expression} + INTERVAL {int(days)} DAY")
        log.info("ClickHouse schema: %s now keeps rows %d days", stored, days)
        changed.append(table)
    return changed
