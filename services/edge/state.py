"""The edge's per-process state, built from settings at start-up and injected into routes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated

import aiohttp
from fastapi import Depends, Request

from services.edge.admission import Admission
from services.edge.auth import ClientKeys, Principal
from services.edge.credentials import Credentials
from services.edge.governance import LimitBook
from services.edge.health import HealthReporter
from services.edge.media import MediaFetcher
from services.edge.metrics import EdgeMetrics, edge_metrics
from services.edge.prices import EdgePrices
from services.edge.providers.registry import Registry
from services.edge.quota import Quotas
from services.edge.responses.store import ResponseStore
from services.edge.routing import Routes
from services.edge.settings import EdgeSettings
from services.edge.status import StatusBoard
from services.edge.streams import StreamSlots
from services.edge.sync import SyncResponder
from services.edge.telemetry import Telemetry
from services.edge.tracing import Tracing
from services.edge.upstream import upstream_client
from services.edge.usage import UsagePublisher
from shared import metrics as shared_metrics
from shared.audit import Auditor
from shared.bus import Bus
from shared.version import VERSION

log = logging.getLogger("switchyard.edge")


@dataclass
class Edge:
    settings: EdgeSettings
    bus: Bus
    client_keys: ClientKeys
    routes: Routes
    credentials: Credentials
    usage: UsagePublisher
    registry: Registry
    http: aiohttp.ClientSession
    auditor: Auditor
    media: MediaFetcher
    health: HealthReporter
    limits: LimitBook
    quotas: Quotas
    prices: EdgePrices
    admission: Admission
    metrics: EdgeMetrics
    telemetry: Telemetry
    status: StatusBoard
    responses: ResponseStore
    instance: str
    streams: StreamSlots
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: EdgeSettings) -> Edge:
        instance = f"edge-{settings.instance_name}-{os.getpid()}"
        bus = Bus.for_service(settings, "edge", f"switchyard-{instance}")
        limits = LimitBook(bus)
        quotas = Quotas(
            bus,
            instance,
            lease_seconds=settings.lease_seconds,
            fraction=settings.lease_fraction,
            idle_return=settings.lease_idle_return,
            timeout=settings.limits_timeout,
        )
        metrics = edge_metrics(user_labels=settings.metrics_user_labels)
        usage = UsagePublisher(bus, settings.spool_dir, instance)
        credentials = Credentials(bus, instance, settings.provider_key_ttl, settings.identity())
        prices = EdgePrices(bus)
        tracing = Tracing.from_environment(capture_content=settings.otel_capture_content)
        return cls(
            settings=settings,
            bus=bus,
            client_keys=ClientKeys(bus, settings.admin_key.get_secret_value()),
            routes=Routes(bus),
            credentials=credentials,
            usage=usage,
            registry=Registry(),
            http=upstream_client(settings),  # built inside the running loop (lifespan)
            auditor=Auditor(bus, instance),
            media=MediaFetcher(
                settings.media_fetch_max_bytes, settings.media_fetch_timeout, settings.media_fetch_allowed()
            ),
            health=HealthReporter(bus, instance, settings.health_report_seconds),
            limits=limits,
            quotas=quotas,
            prices=prices,
            admission=Admission(
                bus,
                limits,
                quotas,
                prices,
                fail_open=settings.limits_fail_open,
                max_output=settings.default_max_output_tokens,
                refused=metrics.refused,
            ),
            metrics=metrics,
            telemetry=Telemetry(usage, metrics, tracing, prices),
            status=StatusBoard(bus, "edge", instance, settings.heartbeat_seconds),
            responses=ResponseStore(bus, lambda: credentials.responses_key),
            instance=instance,
            streams=StreamSlots(settings.max_streams_per_key),
        )

    async def start(self) -> None:
        await self.bus.connect()
        shared_metrics.PROCESS_START.labels("edge", VERSION).set_to_current_time()
        await self.auditor.setup()
        mirrors = {
            "routes": self.routes.mirror,
            "client_keys": self.client_keys.mirror,
            "projects": self.limits.project_mirror,
            "users": self.limits.user_mirror,
            "prices": self.prices.mirror,
        }
        sync = SyncResponder(self.bus, self.instance, mirrors, self.credentials.refresh)
        await sync.start()
        await self.quotas.start()
        await self.status.start()
        for name, coro in (
            ("client-keys", self.client_keys.mirror.run()),
            ("routes", self.routes.mirror.run()),
            ("credentials", self.credentials.run()),
            ("usage", self.usage.run()),
            ("health", self.health.run()),
            ("projects", self.limits.project_mirror.run()),
            ("users", self.limits.user_mirror.run()),
            ("prices", self.prices.mirror.run()),
            ("quotas", self.quotas.run()),
            ("status", self.status.run()),
            ("metrics", self.metrics.keep_flushing()),
        ):
            self.tasks.append(asyncio.create_task(coro, name=name))
        # Serve once the caches hold the current state, so the first request is not refused.
        # (Not the prices set at run time: metering makes their bucket, and until it is read
        # the catalog's prices hold.)
        waits = [mirror.ready.wait() for kind, mirror in mirrors.items() if kind != "prices"]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=30)
        except TimeoutError:
            log.warning("serving before the route table / client keys arrived; is the router up?")
        try:
            await asyncio.wait_for(self.credentials.loaded.wait(), timeout=5)
        except TimeoutError:
            log.warning("serving without provider keys yet; is keyvault up?")

    async def stop(self) -> None:
        """The app's shutdown, after uvicorn finished the requests in flight: each step is
        bounded, so a stuck one is logged (with where it is stuck) instead of holding the
        process until it is killed; the usage publisher gets the longest, to flush."""
        await _bounded("audit flush", self.auditor.flush(), 6.0)
        await _bounded("leaving the router's list of edges", self.health.leave(), 2.0)
        await _bounded("handing back unused quota", self.quotas.give_back_all(), 3.0)
        for task in self.tasks:
            task.cancel()  # the usage publisher publishes (or spools) what it holds on the way out
        _, pending = await asyncio.wait(self.tasks, timeout=10.0)
        for task in pending:
            log.error("edge task %s did not stop within 10 s; it is at:", task.get_name())
            for frame in task.get_stack():
                log.error("  %s:%d %s", frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        await _bounded("trace export", asyncio.to_thread(self.telemetry.tracing.shutdown), 5.0)
        await _bounded("upstream client close", self.http.close(), 5.0)
        await _bounded("media client close", self.media.close(), 5.0)
        await self.bus.close(5.0)


async def _bounded(step: str, work: Awaitable[object], seconds: float) -> None:
    try:
        await asyncio.wait_for(work, timeout=seconds)
    except TimeoutError:
        log.error("edge shutdown: %s took over %.0f s; going on", step, seconds)


async def get_edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    return edge


EdgeDep = Annotated[Edge, Depends(get_edge)]


async def get_principal(request: Request, edge: EdgeDep) -> Principal:
    principal = edge.client_keys.authenticate(request.headers.get("authorization"), request.headers.get("api-key"))
    request.state.principal = principal  # for the audit record
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
