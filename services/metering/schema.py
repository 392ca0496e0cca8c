"""The ClickHouse schema: a documented, stable interface (see docs/analytics.md).

- ``usage_events``: one row per request, partitioned by month, kept for the retention TTL.
- ``usage_hourly``: per hour, user, client key, model and provider, filled by a
  materialized view as events are inserted; the usage API reads it.
- ``prices``: prices admins added (the catalog's ship with the code); versioned, with
  effective dates.
"""

from __future__ import annotations

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
]


def ddl(retention_days: int) -> list[str]:
    days = int(retention_days)
    return [
        f"""
CREATE TABLE IF NOT EXISTS {USAGE_TABLE} (
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
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (toDate(ts), event_id)
TTL toDateTime(ts) + INTERVAL {days} DAY
""",
        f"""
CREATE TABLE IF NOT EXISTS {HOURLY_TABLE} (
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
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, user, client_key_id, model, provider)
TTL hour + INTERVAL {days} DAY
""",
        f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {HOURLY_VIEW} TO {HOURLY_TABLE} AS
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
FROM {USAGE_TABLE}
GROUP BY hour, user, client_key_id, model, provider
""",
        f"""
CREATE TABLE IF NOT EXISTS {PRICES_TABLE} (
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
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (provider, model, effective_from)
""",
        f"""
CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
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
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (toDate(ts), event_id)
""",
    ]
