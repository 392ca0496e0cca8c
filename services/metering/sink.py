"""The one seam to ClickHouse (clickhouse-connect): schema, idempotent inserts, queries.

The same code drives the embedded chDB engine (``chdb://`` DSN) and a ClickHouse server
(``http(s)://`` DSN). The client is synchronous and chDB allows one engine per process, so
every call runs on one dedicated worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver import options as _clickhouse_options
from clickhouse_connect.driver.client import Client

from services.metering.pricing import Price
from services.metering.schema import (
    AUDIT_COLUMNS,
    AUDIT_TABLE,
    HOURLY_COLUMNS,
    HOURLY_GROUP,
    HOURLY_SELECT,
    HOURLY_SUMS,
    HOURLY_TABLE,
    PRICE_COLUMNS,
    PRICES_TABLE,
    USAGE_COLUMNS,
    USAGE_TABLE,
    ddl,
)
from shared.events import AuditEvent, UsageEvent
from shared.memory import release_clean_pages

# clickhouse-connect imports pandas, when it is installed (chdb installs it), to ask whether
# the data of each insert is a DataFrame: some 50 MiB and a second of CPU at the first insert
# of every metering process. Ours are lists of rows; telling it there is no pandas keeps it out.
_clickhouse_options.pd = None
_clickhouse_options.pd_time_test = None

log = logging.getLogger("switchyard.metering.sink")

_GROUP_BY = ", ".join(HOURLY_GROUP)
_ROLLUP_SUMS = ", ".join(f"sum({column})" for column in HOURLY_SUMS)


class Sink:
    def __init__(self, dsn: str, retention_days: int, *, cluster: str | None = None) -> None:
        self.dsn = dsn
        self.retention_days = retention_days
        self.cluster = cluster
        # On a cluster, an insert returns once the shards hold the rows, so the next batch's
        # check for events already stored sees them.
        self._insert_settings: dict[str, Any] = {"insert_distributed_sync": 1} if cluster else {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client: Client | None = None
        self.lookups = 0  # inserts that looked for events stored already

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _connect(self) -> Client:
        if self._client is None:
            client = clickhouse_connect.get_client(dsn=self.dsn)
            for statement in ddl(self.retention_days, self.cluster):
                client.command(statement)
            self._client = client
            if self.dsn.startswith("chdb:"):
                _release_engine_start_up()
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

    async def insert(self, rows: list[tuple[UsageEvent, float, str]], check: set[str] | None = None) -> int:
        """Insert events not stored yet; returns how many were new. Idempotent per event id
        for the ids in ``check`` (all of them when it is None): the others are known to be
        new (a message's first delivery, services/metering/consumer.suspect), so the lookup
        that costs as much as the insert is made only when it can find something."""
        return int(await self._run(self._insert, rows, check))

    def _insert(self, rows: list[tuple[UsageEvent, float, str]], check: set[str] | None = None) -> int:
        client = self._connect()
        unique: dict[str, tuple[UsageEvent, float, str]] = {}
        for row in rows:
            unique.setdefault(row[0].event_id, row)
        if not unique:
            return 0
        look = list(unique) if check is None else [i for i in unique if i in check]
        stored: list[UsageEvent] = []
        if look:
            self.lookups += 1
            days = sorted({_utc(unique[i][0].ts).date() for i in look})
            present = client.query(
                f"SELECT event_id FROM {USAGE_TABLE} WHERE toDate(ts) IN {{days:Array(Date)}} "
                "AND event_id IN {ids:Array(String)}",
                parameters={"days": days, "ids": look},
            ).result_rows
            stored = [unique.pop(event_id)[0] for (event_id,) in present if event_id in unique]
        if unique:
            data = [_row(event, cost, version) for event, cost, version in unique.values()]
            client.insert(USAGE_TABLE, data, column_names=USAGE_COLUMNS, settings=self._insert_settings)
        if stored:
            # Events already stored come back when a metering process died before acking
            # them, possibly mid-insert: ClickHouse writes the raw rows, then the rollup's, and
            # a crash in between leaves the rollup short. Bring those hours up to the raw rows.
            self._repair_rollup(client, stored)
        return len(unique)

    def _repair_rollup(self, client: Client, events: list[UsageEvent]) -> None:
        """Add to the hourly rollup what the raw rows of these events' hours and users hold
        beyond it (runs on the sink's one thread, between this process's own inserts)."""
        hours = sorted({_utc(e.ts).replace(minute=0, second=0, microsecond=0) for e in events})
        params = {
            "days": sorted({h.date() for h in hours}),
            "hours": hours,
            "users": sorted({e.user for e in events}),
        }
        raw = client.query(
            f"{HOURLY_SELECT}FROM {USAGE_TABLE} FINAL WHERE toDate(ts) IN {{days:Array(Date)}} "
            "AND toStartOfHour(ts) IN {hours:Array(DateTime('UTC'))} AND user IN {users:Array(String)} "
            f"GROUP BY {_GROUP_BY}",
            parameters=params,
        ).result_rows
        rolled = client.query(
            f"SELECT {_GROUP_BY}, {_ROLLUP_SUMS} FROM {HOURLY_TABLE} "
            "WHERE hour IN {hours:Array(DateTime('UTC'))} AND user IN {users:Array(String)} "
            f"GROUP BY {_GROUP_BY}",
            parameters=params,
        ).result_rows
        width = len(HOURLY_GROUP)
        have = {tuple(r[:width]): r[width:] for r in rolled}
        fixes = []
        for row in raw:
            key, want = tuple(row[:width]), row[width:]
            got = have.get(key, (0,) * len(want))
            delta = [w - g for w, g in zip(want, got, strict=True)]
            counts = delta[:-1]  # the last column is the cost, a float
            if not any(counts):
                continue
            if any(d < 0 for d in counts):
                log.error("hourly rollup holds more than the raw events for %s; left as it is", key)
                continue
            fixes.append([*key, *delta])
        if fixes:
            client.insert(HOURLY_TABLE, fixes, column_names=HOURLY_COLUMNS, settings=self._insert_settings)
            log.warning("hourly rollup was short for %d group(s) after a redelivery; repaired", len(fixes))

    async def insert_audit(self, events: list[AuditEvent]) -> int:
        """Insert audit events not stored yet; idempotent per event id."""

        def _insert() -> int:
            client = self._connect()
            unique = {e.event_id: e for e in events}
            present = client.query(
                f"SELECT event_id FROM {AUDIT_TABLE} WHERE event_id IN {{ids:Array(String)}}",
                parameters={"ids": list(unique)},
            ).result_rows
            for (event_id,) in present:
                unique.pop(event_id, None)
            rows = [
                [e.event_id, _utc(e.ts), e.actor, e.actor_user, e.action, e.target, e.status, e.source, e.instance]
                for e in unique.values()
            ]
            if rows:
                client.insert(AUDIT_TABLE, rows, column_names=AUDIT_COLUMNS, settings=self._insert_settings)
            return len(rows)

        return int(await self._run(_insert))

    async def insert_price(self, price: Price) -> None:
        def _insert() -> None:
            row = [
                price.provider,
                price.model,
                _utc(price.effective_from),
                price.version,
                price.input,
                price.output,
                price.cached_input,
                price.cache_write,
                price.reasoning,
                dt.datetime.now(dt.UTC),
            ]
            self._connect().insert(PRICES_TABLE, [row], column_names=PRICE_COLUMNS, settings=self._insert_settings)

        await self._run(_insert)

    async def stored_prices(self) -> list[Price]:
        rows = await self.query(
            f"SELECT provider, model, toUnixTimestamp64Milli(effective_from), version, input, output, "
            f"cached_input, cache_write, reasoning FROM {PRICES_TABLE} FINAL",
            {},
        )
        return [
            Price(
                provider=r[0],
                model=r[1],
                effective_from=r[2] / 1000,
                version=r[3],
                input=r[4],
                output=r[5],
                cached_input=r[6],
                cache_write=r[7],
                reasoning=r[8],
                source="admin",
            )
            for r in rows
        ]

    async def query(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        def _query() -> list[tuple[Any, ...]]:
            return [tuple(row) for row in self._connect().query(sql, parameters=parameters).result_rows]

        return list(await self._run(_query))


def _release_engine_start_up() -> None:
    """The embedded engine has started and made the schema: the code and data of its library
    only its start-up used go back (shared/memory.py), some 100-170 MiB of resident memory."""
    import chdb._chdb

    released = release_clean_pages(Path(chdb._chdb.__file__))
    log.info("embedded ClickHouse started; released %d MiB of start-up pages", released // 1024)


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
        e.cache_write_tokens,
        e.reasoning_tokens,
        e.total_tokens,
        e.usage_estimated,
        cost,
        version,
        e.ttft_ms,
        e.latency_ms,
        e.upstream_latency_ms,
        e.edge_instance,
        e.routing_decision_id,
        min(e.attempts, 255),
        e.provider_account,
        e.project,
        e.request_id or e.event_id,
        e.trace_id,
    ]
