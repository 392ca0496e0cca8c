"""The metering service: usage events from JetStream into ClickHouse, prices, usage queries."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.metering import metrics
from services.metering.budgets import BudgetReconciler
from services.metering.consumer import AuditConsumer, UsageConsumer
from services.metering.orphans import OrphanSweeper
from services.metering.periodic import every
from services.metering.price_file import PriceFile
from services.metering.prices import Prices
from services.metering.queries import (
    audit_log,
    provider_keys_last_used,
    request_log,
    usage_performance,
    usage_summary,
    usage_timeseries,
)
from services.metering.reconcile import reconcile
from services.metering.recost import recost
from services.metering.settings import MeteringSettings
from services.metering.sink import Sink
from shared import subjects
from shared.bus import Bus, Msg
from shared.catalog import load_catalog
from shared.errors import INVALID_REQUEST, UNAVAILABLE, GatewayError
from shared.messages import (
    AuditLog,
    AuditQuery,
    BudgetSpent,
    BudgetSpentQuery,
    CatalogLoad,
    CatalogLoaded,
    Empty,
    KeysLastUsed,
    MeteringStatus,
    Ping,
    PriceIn,
    PriceList,
    PriceOut,
    RecostQuery,
    RecostReport,
    RequestLog,
    RequestsQuery,
    TimeseriesQuery,
    UsageFilter,
    UsagePerformance,
    UsageSummary,
    UsageTimeseries,
)

log = logging.getLogger("switchyard.metering")

T = TypeVar("T")
STREAM_NEARLY_FULL = 0.8  # a stream this full is reported (readiness detail, log) before it refuses events


async def _store(call: Callable[[], Awaitable[T]]) -> T:
    """A ClickHouse query for a client: an unreachable store is a 503, not a 500."""
    try:
        return await call()
    except GatewayError:
        raise
    except Exception as exc:
        log.warning("usage store query failed: %s", exc)
        raise GatewayError(UNAVAILABLE, "usage store unavailable") from exc


class Metering:
    def __init__(self, settings: MeteringSettings, bus: Bus, sink: Sink) -> None:
        self.settings = settings
        self.bus = bus
        self.sink = sink
        self.instance = f"metering-{socket.gethostname()}-{os.getpid()}"
        self.prices = Prices(load_catalog(), sink, bus)
        self.price_file = PriceFile(settings.prices_file) if settings.prices_file is not None else None
        self.audit = AuditConsumer(
            bus, sink, batch_size=settings.batch_size, batch_wait=settings.batch_wait, ack_wait=settings.ack_wait
        )
        self.budgets = BudgetReconciler(bus, sink, settings.budget_reconcile_seconds)
        self.orphans = OrphanSweeper(
            bus,
            sink,
            self.prices,
            heartbeat=settings.heartbeat_seconds,
            every=settings.orphan_sweep_seconds,
            grace=settings.orphan_grace_seconds,
            lookback=settings.orphan_lookback_hours * 3600,
        )
        self.consumer = UsageConsumer(
            bus,
            sink,
            self.prices,
            batch_size=settings.batch_size,
            batch_wait=settings.batch_wait,
            ack_wait=settings.ack_wait,
            refresh_every=settings.refresh_every(),
        )

    async def start(self) -> None:
        await self.bus.ensure_kv(subjects.PRICES_BUCKET)
        await self.prices.reload()
        await self.prices.publish()  # heals a lost bucket; the prices stored are the truth
        await self._price_file_round()  # a mounted price file, as it is now
        await self.consumer.setup()
        await self.audit.setup()
        await self.bus.serve(subjects.AUDIT_LIST, subjects.QUEUE_METERING, AuditQuery, self.audit_log)
        q = subjects.QUEUE_METERING
        await self.bus.serve(subjects.METERING_PING, q, Empty, self.ping)
        await self.bus.serve(subjects.USAGE_SUMMARY, q, UsageFilter, self.summary)
        await self.bus.serve(subjects.USAGE_TIMESERIES, q, TimeseriesQuery, self.timeseries)
        await self.bus.serve(subjects.USAGE_REQUESTS, q, RequestsQuery, self.requests)
        await self.bus.serve(subjects.USAGE_PERFORMANCE, q, UsageFilter, self.performance)
        await self.bus.serve(subjects.METERING_STATUS, q, Empty, self.status)
        await self.bus.serve(subjects.USAGE_KEYS_LAST_USED, q, Empty, self.keys_last_used)
        await self.bus.serve(subjects.PRICES_LIST, q, Empty, self.list_prices)
        await self.bus.serve(subjects.PRICES_SET, q, PriceIn, self.set_price)
        await self.bus.serve(subjects.CATALOG_LOAD, q, CatalogLoad, self.load_catalog)
        await self.bus.serve(subjects.USAGE_RECOST, q, RecostQuery, self.recost)
        await self.bus.serve(subjects.BUDGET_SPENT, q, BudgetSpentQuery, self.budget_spent)
        await self.bus.subscribe(subjects.PRICES_CHANGED, self._prices_changed)
        await self.orphans.start()

    async def price_file_loop(self, stop: asyncio.Event) -> None:
        """Every ``GATEWAY_PRICES_FILE_POLL_SECONDS``, the mounted price file if it changed."""
        if self.price_file is not None:
            await every(self.settings.prices_file_poll_seconds, stop, self._price_file_round, "price file")

    async def _price_file_round(self) -> None:
        load = self.price_file.changed() if self.price_file is not None else None
        if load is None:
            return
        try:
            loaded = await self.prices.load(load)
        except GatewayError as exc:
            assert self.price_file is not None
            self.price_file.refused(exc.message)
            return
        log.info("price file: %s in force, %d price(s) changed", loaded.version, len(loaded.changed))
        await self.bus.publish(subjects.PRICES_CHANGED, Empty())  # other metering replicas reload

    async def reconcile_loop(self, stop: asyncio.Event) -> None:
        """Every ``reconcile_seconds``, the last ``reconcile_hours`` of the rollup checked
        against the raw events and repaired (services/metering/reconcile.py); what was found is
        the ``switchyard_rollup_difference_groups`` gauge."""
        await every(self.settings.reconcile_seconds, stop, self._reconcile_round, "rollup reconciliation")

    async def _reconcile_round(self) -> None:
        now = dt.datetime.now(dt.UTC)
        report = await reconcile(self.sink, now - dt.timedelta(hours=self.settings.reconcile_hours), now, repair=True)
        if report.differences:
            log.warning("rollup differed from the raw events in %d group(s); repaired", len(report.differences))

    async def budget_spent(self, query: BudgetSpentQuery) -> BudgetSpent:
        return await _store(lambda: self.budgets.spent(query))

    async def ping(self, _: Empty) -> Ping:
        return Ping(service="metering", instance=self.instance)

    async def summary(self, query: UsageFilter) -> UsageSummary:
        return await _store(lambda: usage_summary(self.sink, query))

    async def timeseries(self, query: TimeseriesQuery) -> UsageTimeseries:
        return await _store(lambda: usage_timeseries(self.sink, query))

    async def performance(self, query: UsageFilter) -> UsagePerformance:
        return await _store(lambda: usage_performance(self.sink, query))

    async def requests(self, query: RequestsQuery) -> RequestLog:
        return await _store(lambda: request_log(self.sink, query))

    async def audit_log(self, query: AuditQuery) -> AuditLog:
        return await _store(lambda: audit_log(self.sink, query))

    async def keys_last_used(self, _: Empty) -> KeysLastUsed:
        return KeysLastUsed(last_used=await _store(lambda: provider_keys_last_used(self.sink)))

    async def list_prices(self, _: Empty) -> PriceList:
        return PriceList(data=self.prices.current())

    async def set_price(self, request: PriceIn) -> PriceOut:
        price = await _store(lambda: self.prices.add(request))
        await self.bus.publish(subjects.PRICES_CHANGED, Empty())  # other metering replicas reload
        return price

    async def load_catalog(self, request: CatalogLoad) -> CatalogLoaded:
        loaded = await _store(lambda: self.prices.load(request))
        await self.bus.publish(subjects.PRICES_CHANGED, Empty())  # other metering replicas reload
        return loaded

    async def recost(self, query: RecostQuery) -> RecostReport:
        if query.start >= query.end:
            raise GatewayError(INVALID_REQUEST, "'from' must be before 'to'", param="from")
        report = await _store(lambda: recost(self.sink, self.prices.book, query))
        if report.events_corrected and not report.dry_run:
            # Budgets whose spend the correction raised: their counters now, not at the next
            # round (a counter edges hold leases on is raised once they are returned).
            try:
                await self.budgets.reconcile_once()
            except Exception as exc:
                log.warning("budgets not reconciled after %s (the next round does): %s", report.correction_id, exc)
        return report

    async def _prices_changed(self, _: Msg) -> None:
        try:
            await self.prices.reload()
        except Exception as exc:
            log.warning("could not reload prices: %s", exc)

    async def update_gauges(self) -> None:
        """Consumer lag, dead letters, how full the streams are and ClickHouse's state, read
        before each metrics scrape."""
        metrics.PENDING.set(await self.bus.consumer_pending(subjects.USAGE_STREAM, subjects.METERING_DURABLE))
        metrics.DEAD_LETTERS.set(await self.bus.stream_messages(subjects.USAGE_DLQ_STREAM))
        await self.streams()
        metrics.CLICKHOUSE_UP.set(1 if await self.sink.ping() else 0)

    async def streams(self) -> dict[str, dict[str, float]]:
        """Each stream metering reads, its bytes against its limit (a readiness detail and
        gauges): a full stream refuses new events, which edges then keep in their spools."""
        out: dict[str, dict[str, float]] = {}
        for stream in (subjects.USAGE_STREAM, subjects.AUDIT_STREAM, subjects.USAGE_DLQ_STREAM):
            messages, size, limit = await self.bus.stream_state(stream)
            fill = size / limit if limit > 0 else 0.0
            metrics.STREAM_BYTES.labels(stream).set(size)
            metrics.STREAM_MAX_BYTES.labels(stream).set(limit)
            metrics.STREAM_FILL.labels(stream).set(fill)
            out[stream] = {"messages": messages, "bytes": size, "max_bytes": limit, "fill": round(fill, 4)}
            if fill >= STREAM_NEARLY_FULL:
                log.warning("stream %s is %.0f%% full (%d of %d bytes)", stream, fill * 100, size, limit)
        return out

    async def status(self, _: Empty) -> MeteringStatus:
        pending, dlq, waiting = 0, 0, 0
        try:
            pending = await self.bus.consumer_pending(subjects.USAGE_STREAM, subjects.METERING_DURABLE)
            dlq = await self.bus.stream_messages(subjects.USAGE_DLQ_STREAM)
            waiting = await self.bus.stream_messages(subjects.USAGE_STREAM)
        except Exception as exc:
            log.warning("could not read consumer state: %s", exc)
        return MeteringStatus(
            inserted=self.consumer.inserted,
            duplicates_skipped=self.consumer.duplicates,
            dead_lettered=self.consumer.dead_lettered,
            dead_letter_stream_messages=dlq,
            pending=pending,
            usage_stream_messages=waiting,
            clickhouse=await self.sink.ping(),
        )
