"""The edge's per-process state, built from settings at start-up and injected into routes."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Annotated

import aiohttp
from fastapi import Depends, Request

from services.edge.auth import ClientKeys, Principal
from services.edge.credentials import Credentials
from services.edge.media import MediaFetcher
from services.edge.providers.registry import Registry
from services.edge.routing import Routes
from services.edge.settings import EdgeSettings
from services.edge.upstream import upstream_client
from services.edge.usage import UsagePublisher
from shared.audit import Auditor
from shared.bus import Bus

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
    instance: str
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: EdgeSettings) -> Edge:
        instance = f"edge-{settings.instance_name}-{os.getpid()}"
        bus = Bus.for_service(settings, "edge", f"switchyard-{instance}")
        return cls(
            settings=settings,
            bus=bus,
            client_keys=ClientKeys(bus, settings.admin_key.get_secret_value()),
            routes=Routes(bus),
            credentials=Credentials(bus, instance, settings.provider_key_ttl),
            usage=UsagePublisher(bus, settings.spool_dir, instance),
            registry=Registry(),
            http=upstream_client(settings),  # built inside the running loop (lifespan)
            auditor=Auditor(bus, instance),
            media=MediaFetcher(
                settings.media_fetch_max_bytes, settings.media_fetch_timeout, settings.media_fetch_allowed()
            ),
            instance=instance,
        )

    async def start(self) -> None:
        await self.bus.connect()
        await self.auditor.setup()
        for coro in (
            self.client_keys.mirror.run(),
            self.routes.mirror.run(),
            self.credentials.run(),
            self.usage.run(),
        ):
            self.tasks.append(asyncio.create_task(coro))
        # Serve once the caches hold the current state, so the first request is not refused.
        waits = [self.client_keys.mirror.ready.wait(), self.routes.mirror.ready.wait()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=30)
        except TimeoutError:
            log.warning("serving before the route table / client keys arrived; is the router up?")
        try:
            await asyncio.wait_for(self.credentials.loaded.wait(), timeout=5)
        except TimeoutError:
            log.warning("serving without provider keys yet; is keyvault up?")

    async def stop(self) -> None:
        await self.auditor.flush()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.http.close()
        await self.media.close()
        await self.bus.close()


async def get_edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    return edge


EdgeDep = Annotated[Edge, Depends(get_edge)]


async def get_principal(request: Request, edge: EdgeDep) -> Principal:
    principal = edge.client_keys.authenticate(request.headers.get("authorization"), request.headers.get("api-key"))
    request.state.principal = principal  # for the audit record
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
