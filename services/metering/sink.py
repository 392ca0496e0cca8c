"""The one seam to ClickHouse (clickhouse-connect): schema, idempotent inserts, queries.

The same code drives the embedded chDB engine (``chdb://`` DSN) and a ClickHouse server
(``http(s)://`` DSN). The client is synchronous and chDB allows one engine per process, so
every call runs on one dedicated worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver import options as _clickhouse_options
from clickhouse_connect.driver.client import Client

from services.metering.migrations import Target, migrate
from services.metering.pricing import Price, PriceSource
from services.metering.schema import (
    ADMITTED_COLUMNS,
    ADMITTED_TABLE,
    AUDIT_COLUMNS,
    AUDIT_TABLE,
    EDGE_LOST,
    HOURLY_DATA,
    PRICE_COLUMNS,
    PRICES_TABLE,
    USAGE_COLUMNS,
    USAGE_TABLE,
    local_name,
    on_cluster,
    rollup_refresh,
)
from shared.cost import PriceSpec, highest, spec_fields
from shared.events import AuditEvent, UsageEvent
from shared.memory import release_clean_pages

# clickhouse-connect imports pandas, when it is installed (chdb installs it), to ask whether
# the data of each insert is a DataFrame: some 50 MiB and a second of CPU at the first insert
# of every metering process. Ours are lists of rows; telling it there is no pandas keeps it out.
_clickhouse_options.pd = None
_clickhouse_options.pd_time_test = None

log = logging.getLogger("switchyard.metering.sink")

# The rollup groups a batch touched: its events' days, hours and users (a superset of its groups).
_TOUCHED = (
    "toDate(ts) IN {days:Array(Date)} AND toStartOfHour(ts) IN {hours:Array(DateTime('UTC'))} "
    "AND user IN {users:Array(String)}"
)


class Sink:
    def __init__(
        self,
        dsn: str,
        retention_days: int,
        *,
        audit_retention_days: int = 400,
        cluster: str | None = None,
        instance: str = "metering",
    ) -> None:
        self.dsn = dsn
        self.retention_days = retention_days
        self.audit_retention_days = audit_retention_days
        self.cluster = cluster
        self.instance = instance
        # On a cluster, an insert returns once a majority of each shard's replicas hold the
        # rows, and the rollup's refresh reads only replicas that have every such insert, so a
        # refresh sees the batch it follows (and the next batch's lookup sees it too).
        self._insert_settings: dict[str, Any] = (
            {"insert_distributed_sync": 1, "insert_quorum": "auto"} if cluster else {}
        )
        self._refresh_settings: dict[str, Any] = (
            {**self._insert_settings, "select_sequential_consistency": 1} if cluster else {}
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client: Client | None = None
        self.lookups = 0  # inserts that looked for events stored already
        self.migrated: list[int] = []  # the migrations this process applied when it opened the store

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _connect(self) -> Client:
        if self._client is None:
            client = clickhouse_connect.get_client(dsn=self.dsn)
            target = Target(
                client,
                self.retention_days,
                self.audit_retention_days,
                self.cluster,
                self.instance,
                self._refresh_settings,
            )
            self.migrated = migrate(target)
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
        """Whether the store answers; never opens it (a standby must not try the engine)."""

        def _ping() -> bool:
            return self._client is not None and bool(self._client.command("SELECT 1") == 1)

        try:
            return bool(await self._run(_ping))
        except Exception:
            return False

    async def insert(
        self, rows: list[tuple[UsageEvent, float, str]], check: set[str] | None = None, *, refresh: bool = True
    ) -> int:
        """Store a batch of events and (unless ``refresh`` is False: the caller refreshes
        their groups itself, before it acknowledges them) bring the rollup groups they belong
        to up to date; returns how many events were new. The raw table folds repeats whatever ``check`` says;
        the lookup of the ids in ``check`` (all of them when it is None; the others are a
        message's first delivery, services/metering/consumer.suspect) only keeps repeats out
        of it and counts them. The rollup never depends on that lookup: see :meth:`refresh`."""
        return int(await self._run(self._insert, rows, check, refresh))

    def _insert(
        self, rows: list[tuple[UsageEvent, float, str]], check: set[str] | None = None, refresh: bool = True
    ) -> int:
        client = self._connect()
        unique: dict[str, tuple[UsageEvent, float, str]] = {}
        for row in rows:
            unique.setdefault(row[0].event_id, row)
        if not unique:
            return 0
        events = [row[0] for row in unique.values()]
        look = list(unique) if check is None else [i for i in unique if i in check]
        if look:
            self.lookups += 1
            days = sorted({_utc(unique[i][0].ts).date() for i in look})
            # A bill for a request whose edge died (orphans.py) is not the event: the event,
            # arriving late, is stored and replaces it.
            present = client.query(
                f"SELECT event_id FROM {USAGE_TABLE} WHERE toDate(ts) IN {{days:Array(Date)}} "
                f"AND event_id IN {{ids:Array(String)}} AND error_type != '{EDGE_LOST}'",
                parameters={"days": days, "ids": look},
            ).result_rows
            for (event_id,) in present:
                unique.pop(event_id, None)
        if unique:
            data = [_row(event, cost, version) for event, cost, version in unique.values()]
            client.insert(USAGE_TABLE, data, column_names=USAGE_COLUMNS, settings=self._insert_settings)
        # Every event of the batch, new or not: a repeat may be the redelivery of an insert whose
        # refresh a crash prevented.
        if refresh:
            self._refresh(client, groups(events))
        return len(unique)

    async def refresh(self, touched: set[tuple[dt.datetime, str]]) -> None:
        """Recompute the rollup groups of these (hour, user) pairs from the deduplicated raw
        events (schema.rollup_refresh says why the result is exact on any number of replicas)."""
        if touched:
            await self._run(lambda: self._refresh(self._connect(), touched))

    def _refresh(self, client: Client, touched: set[tuple[dt.datetime, str]]) -> None:
        hours = sorted({hour for hour, _ in touched})
        params = {
            "days": sorted({h.date() for h in hours}),
            "hours": hours,
            "users": sorted({user for _, user in touched}),
        }
        client.command(rollup_refresh(_TOUCHED), parameters=params, settings=self._refresh_settings or None)

    async def refresh_range(self, start: dt.datetime, end: dt.datetime) -> None:
        """Recompute every rollup group of the whole hours that ``start`` to ``end`` touch (a
        group computed from part of its hour would be short)."""
        start, end = whole_hours(start, end)

        def _go() -> None:
            self._connect().command(
                rollup_refresh("ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')}"),
                parameters={"start": start, "end": end},
                settings=self._refresh_settings or None,
            )

        await self._run(_go)

    async def insert_admitted(self, events: list[UsageEvent]) -> None:
        """Note requests as admitted (a repeat is folded by the table)."""
        rows = [_admitted_row(e) for e in {e.event_id: e for e in events}.values()]
        if rows:
            await self._run(
                lambda: self._connect().insert(
                    ADMITTED_TABLE, rows, column_names=ADMITTED_COLUMNS, settings=self._insert_settings
                )
            )

    async def orphans(
        self, *, instances: list[str] | None = None, since: float = 0.0, due_after: float = 0.0, due_by: float = 0.0
    ) -> list[UsageEvent]:
        """Admitted requests with no event stored (nor a bill): those ``instances`` admitted
        from ``since`` on, or those whose deadline fell after ``due_after`` and by ``due_by``.
        Only the candidates' own ids are looked up among the events."""
        if instances is not None:
            where = "edge_instance IN {instances:Array(String)} AND ts >= fromUnixTimestamp64Milli({since:Int64})"
        else:
            where = (
                "deadline > fromUnixTimestamp64Milli({after:Int64}) "
                "AND deadline <= fromUnixTimestamp64Milli({by:Int64}) "
                "AND ts >= fromUnixTimestamp64Milli({since:Int64})"
            )
        params = {
            "instances": instances or [],
            "since": int(since * 1000),
            "after": int(due_after * 1000),
            "by": int(due_by * 1000),
        }
        rows = await self.query(
            f"WITH candidates AS (SELECT * FROM {ADMITTED_TABLE} FINAL WHERE {where}) "
            f"SELECT {', '.join(ADMITTED_COLUMNS[:2])}, toUnixTimestamp64Milli(deadline) / 1000, "
            f"{', '.join(ADMITTED_COLUMNS[3:])} FROM candidates WHERE event_id NOT IN ("
            f"SELECT event_id FROM {USAGE_TABLE} WHERE toDate(ts) IN (SELECT DISTINCT toDate(ts) FROM candidates) "
            "AND event_id IN (SELECT event_id FROM candidates)) ORDER BY ts LIMIT 100000",
            params,
        )
        out = []
        for r in rows:
            fields = dict(zip(ADMITTED_COLUMNS, r, strict=True))
            fields["ts"] = _seconds(fields["ts"])
            out.append(UsageEvent.model_validate(fields))
        return out

    async def admitting_instances(self, since: float) -> list[str]:
        """The edge processes that admitted requests from ``since`` on."""
        rows = await self.query(
            f"SELECT DISTINCT edge_instance FROM {ADMITTED_TABLE} "
            "WHERE ts >= fromUnixTimestamp64Milli({since:Int64})",
            {"since": int(since * 1000)},
        )
        return [str(r[0]) for r in rows]

    async def bill_orphans(self, rows: list[tuple[UsageEvent, float, str]]) -> int:
        """Store, as their usage, requests whose edge died before they ended: each at what it
        reserved, flagged (error type ``edge_lost``, estimated), written as if stored when the
        request started, so that its own event, should it still come, replaces the bill
        whenever it is stored. Their rollup groups are refreshed."""

        def _bill() -> int:
            client = self._connect()
            data = [[*_row(e, cost, version), _utc(e.ts)] for e, cost, version in rows]
            if data:
                client.insert(
                    USAGE_TABLE, data, column_names=[*USAGE_COLUMNS, "inserted_at"], settings=self._insert_settings
                )
                self._refresh(client, groups([e for e, _, _ in rows]))
            return len(data)

        return int(await self._run(_bill))

    async def delete_rollup(self, hours: list[dt.datetime], users: list[str]) -> None:
        """Remove the rollup rows of these hours and users (reconcile rewrites them after)."""
        where = "hour IN {hours:Array(DateTime('UTC'))} AND user IN {users:Array(String)}"
        if self.cluster:
            statement = (
                f"ALTER TABLE {local_name(HOURLY_DATA, self.cluster)}{on_cluster(self.cluster)} DELETE WHERE {where}"
            )
            settings: dict[str, Any] = {"mutations_sync": 2}
        else:
            statement, settings = f"DELETE FROM {HOURLY_DATA} WHERE {where}", {}
        hours = [h.replace(tzinfo=dt.UTC) if h.tzinfo is None else h for h in hours]
        await self._run(
            lambda: self._connect().command(statement, parameters={"hours": hours, "users": users}, settings=settings)
        )

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

    async def insert_rows(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        def _insert() -> None:
            if rows:
                self._connect().insert(table, rows, column_names=columns, settings=self._insert_settings)

        await self._run(_insert)

    async def insert_prices(self, prices: list[Price]) -> None:
        def _insert() -> None:
            rows = [
                [
                    price.provider,
                    price.model,
                    _utc(price.effective_from),
                    price.version,
                    highest(price.input),
                    highest(price.output),
                    None if price.cached_input is None else highest(price.cached_input),
                    None if price.cache_write is None else highest(price.cache_write),
                    None if price.reasoning is None else highest(price.reasoning),
                    dt.datetime.now(dt.UTC),
                    PriceSpec(**spec_fields(price)).model_dump_json(exclude_defaults=True),
                    price.source,
                ]
                for price in prices
            ]
            if rows:
                self._connect().insert(PRICES_TABLE, rows, column_names=PRICE_COLUMNS, settings=self._insert_settings)

        await self._run(_insert)

    async def stored_prices(self) -> list[Price]:
        """Every price loaded at run time; a row stored before migration 4 has only flat rates."""
        rows = await self.query(
            f"SELECT provider, model, toUnixTimestamp64Milli(effective_from), version, input, output, "
            f"cached_input, cache_write, reasoning, spec, source FROM {PRICES_TABLE} FINAL",
            {},
        )
        out = []
        for r in rows:
            rates = (
                PriceSpec.model_validate_json(r[9]).model_dump()
                if r[9]
                else {"input": r[4], "output": r[5], "cached_input": r[6], "cache_write": r[7], "reasoning": r[8]}
            )
            source: PriceSource = "dataset" if r[10] == "dataset" else "admin"
            out.append(
                Price(provider=r[0], model=r[1], effective_from=r[2] / 1000, version=r[3], source=source, **rates)
            )
        return out

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


def whole_hours(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """``start`` down and ``end`` up to the hour, in UTC: the rollup's grain."""
    start = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    end = end.astimezone(dt.UTC)
    top = end.replace(minute=0, second=0, microsecond=0)
    return start, top if top == end else top + dt.timedelta(hours=1)


def groups(events: list[UsageEvent]) -> set[tuple[dt.datetime, str]]:
    """The (hour, user) pairs of these events: what a rollup refresh of them recomputes."""
    return {(_utc(e.ts).replace(minute=0, second=0, microsecond=0), e.user) for e in events}


def _seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


# A row of usage_events or usage_admitted: each column the event's field of that name (the
# column lists in schema.py give the order), but for the columns read otherwise here.
_TIMES: dict[str, Callable[[UsageEvent], Any]] = {
    "ts": lambda e: _utc(e.ts),
    "deadline": lambda e: _utc(e.deadline or e.ts),
}
_USAGE_READ: list[Callable[[UsageEvent], Any]] = [
    {
        **_TIMES,
        "attempts": lambda e: min(e.attempts, 255),
        "request_id": lambda e: e.request_id or e.event_id,
        "cost_usd": lambda e: 0.0,  # the price book's answer: set by _row
        "price_version": lambda e: "",
    }.get(c)
    or attrgetter(c)
    for c in USAGE_COLUMNS
]
_ADMITTED_READ: list[Callable[[UsageEvent], Any]] = [_TIMES.get(c) or attrgetter(c) for c in ADMITTED_COLUMNS]
_COST, _VERSION = USAGE_COLUMNS.index("cost_usd"), USAGE_COLUMNS.index("price_version")


def _admitted_row(e: UsageEvent) -> list[Any]:
    return [read(e) for read in _ADMITTED_READ]


def _row(e: UsageEvent, cost: float, version: str) -> list[Any]:
    row = [read(e) for read in _USAGE_READ]
    row[_COST], row[_VERSION] = cost, version
    return row
