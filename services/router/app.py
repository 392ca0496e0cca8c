"""The router service: publishes the compiled route table and answers catalog queries."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from services.router.compile import catalog_listing, compile_routes
from services.router.settings import RouterSettings
from shared import subjects
from shared.bus import Bus
from shared.catalog import RouteTable, load_catalog
from shared.messages import CatalogListing, Empty, Ping

log = logging.getLogger("switchyard.router")


class Router:
    def __init__(self, settings: RouterSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.instance = f"router-{socket.gethostname()}-{os.getpid()}"
        self.table: RouteTable = compile_routes(
            load_catalog(),
            settings.base_url_overrides(),
            settings.self_hosted(),
            settings.api_versions(),
        )

    async def start(self) -> None:
        await self.bus.ensure_kv(subjects.ROUTES_BUCKET)  # created, its replicas raised, once
        await self.bus.serve(subjects.ROUTER_PING, subjects.QUEUE_ROUTER, Empty, self.ping)
        await self.bus.serve(subjects.ROUTER_MODELS, subjects.QUEUE_ROUTER, Empty, self.models)
        await self.publish_table()

    async def publish_table(self) -> None:
        """Write the table if the bucket's copy differs (also heals a lost or stale bucket)."""
        kv = await self.bus.kv(subjects.ROUTES_BUCKET)
        payload = self.table.model_dump_json().encode()
        try:
            current = await kv.get(subjects.ROUTES_KEY)
            if current.value == payload:
                return
        except Exception:  # key not there yet
            pass
        await kv.put(subjects.ROUTES_KEY, payload)
        log.info(
            "published route table: %d providers, %d models, catalog %s",
            len(self.table.providers),
            len(self.table.models),
            self.table.catalog_version,
        )

    async def table_published(self) -> bool:
        """The bucket holds this router's table (a readiness check)."""
        kv = await self.bus.kv(subjects.ROUTES_BUCKET)
        return (await kv.get(subjects.ROUTES_KEY)).value == self.table.model_dump_json().encode()

    async def keep_published(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.republish_interval)
            except TimeoutError:
                try:
                    await self.publish_table()
                except Exception as exc:  # bus down: try again next round
                    log.warning("could not republish route table: %s", exc)

    async def ping(self, _: Empty) -> Ping:
        return Ping(service="router", instance=self.instance)

    async def models(self, _: Empty) -> CatalogListing:
        return CatalogListing(catalog_version=self.table.catalog_version, data=catalog_listing(self.table))
