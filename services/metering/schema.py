"""The ClickHouse schema: a documented, stable interface (see docs/analytics.md).

- ``usage_events``: one row per request, partitioned by month, kept for the retention TTL.
- ``usage_hourly``: per hour, user, client key, model and provider, filled by a
  materialized view as events are inserted; the usage API reads it.
- ``prices``: prices admins added (the catalog's ship with the code); versioned, with
  effective dates.

With ``GATEWAY_CLICKHOUSE_CLUSTER`` set, each table is a Replicated table ``<name>_local`` made
``ON CLUSTER`` (every shard's replicas hold it, kept by ClickHouse Keeper), and ``<name>`` is a
Distributed table over them: writes and queries use the same names in both forms. Usage events
are sharded by event id, so an event and its repeats meet on one shard, where the
ReplacingMergeTree folds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USAGE_TABLE = "usage_events"
HOURLY_TABLE = "usage_hourly"
HOURLY_VIEW = "usage_hourly_mv"
PRICES_TABLE = "prices"
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
]


@dataclass(frozen=True)
class _Table:
    name: str
    columns: str
    engine: str  # a MergeTree family member; Replicated<engine> on a cluster
    version: str  # the engine's version column ("" for none)
    layout: str  # PARTITION BY / ORDER BY / TTL
    shard_key: str  # how the Distributed table spreads rows over shards


def _tables(days: int) -> list[_Table]:
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
    trace_id String
""",
            "ReplacingMergeTree",
            "inserted_at",
            f"PARTITION BY toYYYYMM(ts)\nORDER BY (toDate(ts), event_id)\nTTL toDateTime(ts) + INTERVAL {days} DAY",
            "cityHash64(event_id)",
        ),
        _Table(
            HOURLY_TABLE,
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
            "SummingMergeTree",
            "",
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
    created_at DateTime64(3, 'UTC')
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
            "PARTITION BY toYYYYMM(ts)\nORDER BY (toDate(ts), event_id)",
            "cityHash64(event_id)",
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


def local_name(table: str, cluster: str | None) -> str:
    """Where rows are stored: the table itself, or on a cluster its Replicated ``_local`` table."""
    return f"{table}_local" if cluster else table


def ddl(retention_days: int, cluster: str | None = None) -> list[str]:
    """The statements that create the schema: for one server, or ``ON CLUSTER cluster``."""
    days = int(retention_days)
    on = f" ON CLUSTER {_ident(cluster)}" if cluster else ""
    out = []
    for table in _tables(days):
        stored = local_name(table.name, cluster)
        if cluster:
            path = f"'/clickhouse/tables/{{shard}}/{{database}}/{stored}', '{{replica}}'"
            args = ", ".join(a for a in (path, table.version) if a)
            engine = f"Replicated{table.engine}({args})"
        else:
            engine = f"{table.engine}({table.version})" if table.version else table.engine
        out.append(f"CREATE TABLE IF NOT EXISTS {stored}{on} ({table.columns})\nENGINE = {engine}\n{table.layout}\n")
        if cluster:
            out.append(
                f"CREATE TABLE IF NOT EXISTS {table.name}{on} AS {stored}\n"
                f"ENGINE = Distributed({_ident(cluster)}, currentDatabase(), {stored}, {table.shard_key})\n"
            )
    for stored in [local_name(USAGE_TABLE, cluster)] + ([USAGE_TABLE] if cluster else []):
        out.append(
            f"ALTER TABLE {stored}{on} "
            + ", ".join(f"ADD COLUMN IF NOT EXISTS {name} {kind}" for name, kind in ADDED_USAGE_COLUMNS)
            + "\n"
        )
    # Each shard sums its own events: the view reads the table rows are stored in.
    out.append(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {HOURLY_VIEW}{on} TO {local_name(HOURLY_TABLE, cluster)} AS"
        f"{HOURLY_SELECT}FROM {local_name(USAGE_TABLE, cluster)}\n"
        "GROUP BY hour, user, client_key_id, model, provider\n"
    )
    return out


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"GATEWAY_CLICKHOUSE_CLUSTER must be a plain identifier, not {name!r}")
    return name
