"""The one seam to ClickHouse (clickhouse-connect): schema, idempotent inserts, queries.

The same code drives the embedded chDB engine (``chdb://`` DSN) and a ClickHouse server
(``http(s)://`` DSN). The client is synchronous and chDB allows one engine per process, so
every call runs on one dedicated worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from shared.events import UsageEvent

TABLE = "usage_events"

COLUMNS = [
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


def schema(retention_days: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
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
TTL toDateTime(ts) + INTERVAL {int(retention_days)} DAY
"""


class Sink:
    def __init__(self, dsn: str, retention_days: int) -> None:
        self.dsn = dsn
        self.retention_days = retention_days
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client: Client | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _connect(self) -> Client:
        if self._client is None:
            client = clickhouse_connect.get_client(dsn=self.dsn)
            client.command(schema(self.retention_days))
            self._client = client
        return self._client

    async def open(self) -> None:
        await self._run(self._connect)

    async def close(self) -> None:
        def _close() -> None:
            if self._client is not None:
                self._client.close()
                self._client = None

        await self._run(_close)
        self._pool.shutdown(wait=True)

    async def ping(self) -> bool:
        def _ping() -> bool:
            return bool(self._connect().command("SELECT 1") == 1)

        try:
            return bool(await self._run(_ping))
        except Exception:
            return False

    async def insert(self, rows: list[tuple[UsageEvent, float, str]]) -> int:
        """Insert events not stored yet; returns how many were new. Idempotent per event id."""
        return int(await self._run(self._insert, rows))

    def _insert(self, rows: list[tuple[UsageEvent, float, str]]) -> int:
        client = self._connect()
        unique: dict[str, tuple[UsageEvent, float, str]] = {}
        for row in rows:
            unique.setdefault(row[0].event_id, row)
        if not unique:
            return 0
        days = sorted({_utc(r[0].ts).date() for r in unique.values()})
        present = client.query(
            f"SELECT event_id FROM {TABLE} WHERE toDate(ts) IN {{days:Array(Date)}} "
            "AND event_id IN {ids:Array(String)}",
            parameters={"days": days, "ids": list(unique)},
        ).result_rows
        for (event_id,) in present:
            unique.pop(event_id, None)
        if not unique:
            return 0
        data = [_row(event, cost, version) for event, cost, version in unique.values()]
        client.insert(TABLE, data, column_names=COLUMNS)
        return len(data)

    async def query(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        def _query() -> list[tuple[Any, ...]]:
            return [tuple(row) for row in self._connect().query(sql, parameters=parameters).result_rows]

        return list(await self._run(_query))


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _row(e: UsageEvent, cost: float, version: str) -> list[Any]:
    return [
        e.event_id,
        _utc(e.ts),
        e.schema_version,
        e.client_key_id,
        e.user,
        e.request_user,
        e.requested_model,
        e.model,
        e.provider,
        e.provider_key_id,
        e.endpoint,
        e.stream,
        e.status,
        e.error_type,
        e.prompt_tokens,
        e.completion_tokens,
        e.cached_tokens,
        e.reasoning_tokens,
        e.total_tokens,
        e.usage_estimated,
        cost,
        version,
        e.ttft_ms,
        e.latency_ms,
        e.upstream_latency_ms,
        e.edge_instance,
    ]
