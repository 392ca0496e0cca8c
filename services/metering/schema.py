"""The ClickHouse schema: a documented, stable interface (see docs/analytics.md).

- ``usage_events``: one row per request, partitioned by month, kept for the retention TTL. An
  event stored twice (a redelivery) is folded by the ReplacingMergeTree; every reader uses FINAL.
- ``usage_hourly``: a view of ``usage_hourly_data FINAL``: per hour, user, client key, model and
  provider, the sums of the deduplicated raw events. Rows of ``usage_hourly_data`` are only ever
  written whole, recomputed from ``usage_events FINAL`` (``ROLLUP_REFRESH``), never added up from
  inserts, so a repeated event cannot be counted twice; its version column is ``requests``.
- ``prices``: prices admins added (the catalog's ship with the code); versioned, with
  effective dates.
- ``audit_events``: admin changes, kept for their own retention TTL.
- ``usage_admitted``: each request as admitted, before its upstream call, with what it
  reserved; a request whose final event never comes is billed from it (orphans.py).
- ``schema_migrations``: which migrations (services/metering/migrations.py) the store has had.

With ``GATEWAY_CLICKHOUSE_CLUSTER`` set, each table is a Replicated table ``<name>_local`` made
``ON CLUSTER`` (every shard's replicas hold it, kept by ClickHouse Keeper), and ``<name>`` is a
Distributed table over them: writes and queries use the same names in both forms. Usage events
are sharded by event id, so an event and its repeats meet on one shard, where the
ReplacingMergeTree folds them; rollup rows by user, so the versions of one group meet too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USAGE_TABLE = "usage_events"
HOURLY_TABLE = "usage_hourly"  # a view: the table's rows, folded
HOURLY_DATA = "usage_hourly_data"
LEGACY_HOURLY_VIEW = "usage_hourly_mv"  # the materialized view before migration 2
MIGRATIONS_TABLE = "schema_migrations"
ADMITTED_TABLE = "usage_admitted"
ADMITTED_DAYS = 7  # an admitted request ends (or is billed as lost) within hours: kept a week
# The error type of a request billed at its reservation because its edge died before it ended.
EDGE_LOST = "edge_lost"
PRICES_TABLE = "prices"
# Re-costings of stored events after a price correction (services/metering/recost.py): an
# event's cost is its row's cost_usd plus the deltas of its corrections; history is never edited.
CORRECTIONS_TABLE = "cost_corrections"
CORRECTION_COLUMNS = [
    "correction_id",
    "event_id",
    "ts",
    "user",
    "client_key_id",
    "project",
    "model",
    "provider",
    "cost_before",
    "cost_after",
    "delta_usd",
    "version_before",
    "version_after",
    "created_at",
]
AUDIT_TABLE = "audit_events"
AUDIT_COLUMNS = ["event_id", "ts", "actor", "actor_user", "action", "target", "status", "source", "instance"]

USAGE_COLUMNS = [
    "event_id",
    "ts",
    "schema_version",
    "client_key_id",
    "user",
    "request_user",
    "requested_model",
    "model",
    "provider",
    "provider_key_id",
    "endpoint",
    "stream",
    "status",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "usage_estimated",
    "cost_usd",
    "price_version",
    "ttft_ms",
    "latency_ms",
    "upstream_latency_ms",
    "edge_instance",
    "routing_decision_id",
    "attempts",
    "provider_account",
    "project",
    "request_id",
    "trace_id",
    "cache_write_1h_tokens",
    "price_context",
]

# Columns added to usage_events after its first release: a table made before gets them with
# ALTER TABLE ... ADD COLUMN IF NOT EXISTS (rows stored earlier read the default).
ADDED_USAGE_COLUMNS = (
    ("routing_decision_id", "String"),
    ("attempts", "UInt8"),
    ("provider_account", "LowCardinality(String)"),
    ("project", "LowCardinality(String)"),
    ("request_id", "String"),
    ("trace_id", "String"),
    # Tokens costed at $0 because no price was found (price_version "unpriced"): computed
    # from the row, so rows stored before this column have it too.
    ("price_missing", "Bool ALIAS (price_version = 'unpriced') AND (total_tokens > 0)"),
    # Migration 4: what a price variant or a 1-hour cache write needs to re-cost a row.
    ("cache_write_1h_tokens", "UInt64 DEFAULT 0"),
    ("price_context", "LowCardinality(String) DEFAULT ''"),
)
# Columns added to prices by migration 4: the whole price (tiers, variants, windows) as JSON,
# and where it came from. A row stored before reads its flat rates.
ADDED_PRICE_COLUMNS = (
    ("spec", "String DEFAULT ''"),
    ("source", "LowCardinality(String) DEFAULT 'admin'"),
)

# The rollup's grouping and the sums it keeps, in the order of HOURLY_SELECT's columns.
HOURLY_GROUP = ("hour", "user", "client_key_id", "model", "provider")
HOURLY_SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
)
HOURLY_COLUMNS = [*HOURLY_GROUP, *HOURLY_SUMS]

ADMITTED_COLUMNS = [
    "event_id",
    "ts",
    "deadline",
    "edge_instance",
    "client_key_id",
    "user",
    "request_user",
    "requested_model",
    "model",
    "provider",
    "provider_account",
    "endpoint",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "project",
    "request_id",
    "trace_id",
]

PRICE_COLUMNS = [
    "provider",
    "model",
    "effective_from",
    "version",
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
    "created_at",
    "spec",
    "source",
]


@dataclass(frozen=True)
class _Table:
    name: str
    columns: str
    engine: str  # a MergeTree family member; Replicated<engine> on a cluster
    version: str  # the engine's version column ("" for none)
    layout: str  # PARTITION BY / ORDER BY / TTL
    shard_key: str  # how the Distributed table spreads rows over shards


def _tables(days: int, audit_days: int) -> list[_Table]:
    return [
        _Table(
            USAGE_TABLE,
            """
    event_id String,
    ts DateTime64(3, 'UTC'),
    schema_version UInt8,
    client_key_id String,
    user String,
    request_user String,
    requested_model String,
    model LowCardinality(String),
    provider LowCardinality(String),
    provider_key_id String,
    endpoint LowCardinality(String),
    stream Bool,
    status UInt16,
    error_type LowCardinality(String),
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cached_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    total_tokens UInt64,
    usage_estimated Bool,
    cost_usd Float64,
    price_version LowCardinality(String),
    ttft_ms Float32,
    latency_ms Float32,
    upstream_latency_ms Float32,
    edge_instance LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    routing_decision_id String,
    attempts UInt8,
    provider_account LowCardinality(String),
    project LowCardinality(String),
    request_id String,
    trace_id String,
    cache_write_1h_tokens UInt64 DEFAULT 0,
    price_context LowCardinality(String) DEFAULT ''
""",
            "ReplacingMergeTree",
            "inserted_at",
            f"PARTITION BY toYYYYMM(ts)\nORDER BY (toDate(ts), event_id)\nTTL toDateTime(ts) + INTERVAL {days} DAY",
            "cityHash64(event_id)",
        ),
        _Table(
            HOURLY_DATA,
            """
    hour DateTime('UTC'),
    user String,
    client_key_id String,
    model LowCardinality(String),
    provider LowCardinality(String),
    requests UInt64,
    errors UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cached_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    total_tokens UInt64,
    cost_usd Float64
""",
            "ReplacingMergeTree",
            "requests",  # a recomputation that saw more events is newer (see ROLLUP_REFRESH)
            "PARTITION BY toYYYYMM(hour)\nORDER BY (hour, user, client_key_id, model, provider)\n"
            f"TTL hour + INTERVAL {days} DAY",
            "cityHash64(user)",
        ),
        _Table(
            PRICES_TABLE,
            """
    provider String,
    model String,
    effective_from DateTime64(3, 'UTC'),
    version String,
    input Float64,
    output Float64,
    cached_input Nullable(Float64),
    cache_write Nullable(Float64),
    reasoning Nullable(Float64),
    created_at DateTime64(3, 'UTC'),
    spec String DEFAULT '',
    source LowCardinality(String) DEFAULT 'admin'
""",
            "ReplacingMergeTree",
            "created_at",
            "ORDER BY (provider, model, effective_from)",
            "cityHash64(provider, model)",
        ),
        _Table(
            AUDIT_TABLE,
            """
    event_id String,
    ts DateTime64(3, 'UTC'),
    actor String,
    actor_user String,
    action LowCardinality(String),
    target String,
    status UInt16,
    source String,
    instance LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
""",
            "ReplacingMergeTree",
            "inserted_at",
            "PARTITION BY toYYYYMM(ts)\nORDER BY (toDate(ts), event_id)\n"
            f"TTL toDateTime(ts) + INTERVAL {audit_days} DAY",
            "cityHash64(event_id)",
        ),
        _Table(
            ADMITTED_TABLE,
            """
    event_id String,
    ts DateTime64(3, 'UTC'),
    deadline DateTime64(3, 'UTC'),
    edge_instance LowCardinality(String),
    client_key_id String,
    user String,
    request_user String,
    requested_model String,
    model LowCardinality(String),
    provider LowCardinality(String),
    provider_account LowCardinality(String),
    endpoint LowCardinality(String),
    stream Bool,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    project LowCardinality(String),
    request_id String,
    trace_id String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
""",
            "ReplacingMergeTree",
            "inserted_at",
            "PARTITION BY toYYYYMMDD(ts)\nORDER BY (toDate(ts), event_id)\n"
            f"TTL toDateTime(ts) + INTERVAL {ADMITTED_DAYS} DAY",
            "cityHash64(event_id)",
        ),
        _Table(
            CORRECTIONS_TABLE,
            """
    correction_id String,
    event_id String,
    ts DateTime64(3, 'UTC'),
    user String,
    client_key_id String,
    project LowCardinality(String),
    model LowCardinality(String),
    provider LowCardinality(String),
    cost_before Float64,
    cost_after Float64,
    delta_usd Float64,
    version_before LowCardinality(String),
    version_after LowCardinality(String),
    created_at DateTime64(3, 'UTC')
""",
            "ReplacingMergeTree",
            "created_at",
            # one row per correction and event: a re-run of the same correction replaces its rows
            "PARTITION BY toYYYYMM(ts)\nORDER BY (toDate(ts), event_id, correction_id)\n"
            f"TTL toDateTime(ts) + INTERVAL {days} DAY",
            "cityHash64(event_id)",
        ),
        _Table(
            MIGRATIONS_TABLE,
            """
    version UInt32,
    description String,
    applied_at DateTime64(3, 'UTC'),
    applied_by String
""",
            "ReplacingMergeTree",
            "",
            "ORDER BY version",
            "version",
        ),
    ]


# What the rollup holds for a set of raw events (the view runs it on each insert).
HOURLY_SELECT = """
SELECT
    toStartOfHour(ts) AS hour,
    user,
    client_key_id,
    model,
    provider,
    count() AS requests,
    countIf(status >= 400) AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cached_tokens) AS cached_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(total_tokens) AS total_tokens,
    sum(cost_usd) AS cost_usd
"""


# What usage_hourly_data holds for a set of raw events: whole groups, recomputed.
HOURLY_FROM_RAW = f"{HOURLY_SELECT}FROM {USAGE_TABLE} FINAL\n"
HOURLY_GROUP_BY = "GROUP BY " + ", ".join(HOURLY_GROUP) + "\n"


def rollup_refresh(where: str) -> str:
    """The statement that rewrites every rollup group of the raw events ``where`` selects.

    Why it is exact: a group's row is computed from ``usage_events FINAL``, the deduplicated
    events, never added to. Events are only ever added, so of two computations of a group the
    one that saw more events is the newer, and ``requests`` is the version the ReplacingMergeTree
    keeps (equal counts saw the same events). Each batch is refreshed after its insert and
    acknowledged after the refresh, so the last refresh of a group follows the last insert into
    it, whatever was redelivered, replayed or crashed in between, and on any number of replicas.
    """
    return f"INSERT INTO {HOURLY_DATA} ({', '.join(HOURLY_COLUMNS)})\n{HOURLY_FROM_RAW}WHERE {where}\n{HOURLY_GROUP_BY}"


def local_name(table: str, cluster: str | None) -> str:
    """Where rows are stored: the table itself, or on a cluster its Replicated ``_local`` table."""
    return f"{table}_local" if cluster else table


def on_cluster(cluster: str | None) -> str:
    return f" ON CLUSTER {ident(cluster)}" if cluster else ""


def table_ddl(name: str, retention_days: int, audit_days: int, cluster: str | None = None) -> list[str]:
    """The statements that create one table: on one server, or ``ON CLUSTER`` a Replicated
    ``_local`` table and a Distributed one over it."""
    table = next(t for t in _tables(int(retention_days), int(audit_days)) if t.name == name)
    on = on_cluster(cluster)
    stored = local_name(table.name, cluster)
    if cluster:
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{stored}', '{{replica}}'"
        args = ", ".join(a for a in (path, table.version) if a)
        engine = f"Replicated{table.engine}({args})"
    else:
        engine = f"{table.engine}({table.version})" if table.version else table.engine
    out = [f"CREATE TABLE IF NOT EXISTS {stored}{on} ({table.columns})\nENGINE = {engine}\n{table.layout}\n"]
    if cluster:
        out.append(
            f"CREATE TABLE IF NOT EXISTS {table.name}{on} AS {stored}\n"
            f"ENGINE = Distributed({ident(cluster)}, currentDatabase(), {stored}, {table.shard_key})\n"
        )
    return out


def added_columns(cluster: str | None = None) -> list[str]:
    """Columns added to usage_events and prices after their first release, on each form of
    each table."""
    on = on_cluster(cluster)
    return [
        f"ALTER TABLE {stored}{on} "
        + ", ".join(f"ADD COLUMN IF NOT EXISTS {name} {kind}" for name, kind in added)
        + "\n"
        for table, added in ((USAGE_TABLE, ADDED_USAGE_COLUMNS), (PRICES_TABLE, ADDED_PRICE_COLUMNS))
        for stored in [local_name(table, cluster)] + ([table] if cluster else [])
    ]


def hourly_view(cluster: str | None = None) -> str:
    """usage_hourly: the rollup's rows folded, so that a plain ``sum()`` over it is exact."""
    return (
        f"CREATE VIEW IF NOT EXISTS {HOURLY_TABLE}{on_cluster(cluster)} AS\n"
        f"SELECT {', '.join(HOURLY_COLUMNS)} FROM {HOURLY_DATA} FINAL\n"
    )


# Tables whose rows expire, with the setting that says when: (table, TTL expression, which).
RETENTION = (
    (USAGE_TABLE, "toDateTime(ts)", "usage"),
    (CORRECTIONS_TABLE, "toDateTime(ts)", "usage"),
    (HOURLY_DATA, "hour", "usage"),
    (AUDIT_TABLE, "toDateTime(ts)", "audit"),
)


def ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"GATEWAY_CLICKHOUSE_CLUSTER must be a plain identifier, not {name!r}")
    return name
