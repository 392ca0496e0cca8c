"""The live price book: catalog prices plus admin prices stored in ClickHouse."""

from __future__ import annotations

import logging
import secrets
import time

from services.metering.pricing import Price, PriceBook, catalog_prices
from services.metering.sink import Sink
from shared.catalog import Catalog
from shared.errors import INVALID_REQUEST, GatewayError
from shared.messages import PriceIn, PriceOut

log = logging.getLogger("switchyard.metering.prices")


class Prices:
    def __init__(self, catalog: Catalog, sink: Sink) -> None:
        self.catalog = catalog
        self.sink = sink
        self._base = catalog_prices(catalog)
        self.book = PriceBook(self._base)

    async def reload(self) -> None:
        stored = await self.sink.stored_prices()
        self.book = PriceBook(self._base + stored)
        log.info("price book: %d catalog price(s), %d admin price(s)", len(self._base), len(stored))

    def resolve_provider(self, request: PriceIn) -> str:
        if request.provider:
            if request.provider not in self.catalog.providers:
                raise GatewayError(INVALID_REQUEST, f"unknown provider {request.provider!r}", param="provider")
            return request.provider
        entry = self.catalog.models.get(request.model)
        if entry is None:
            raise GatewayError(
                INVALID_REQUEST,
                f"model {request.model!r} is not in the catalog: name its provider",
                param="provider",
            )
        return entry.provider

    async def add(self, request: PriceIn) -> PriceOut:
        now = time.time()
        price = Price(
            provider=self.resolve_provider(request),
            model=request.model,
            effective_from=request.effective_from if request.effective_from is not None else now,
            version=f"admin-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{secrets.token_hex(3)}",
            input=request.input,
            output=request.output,
            cached_input=request.cached_input,
            cache_write=request.cache_write,
            reasoning=request.reasoning,
            source="admin",
        )
        await self.sink.insert_price(price)
        await self.reload()
        return PriceOut(**price.model_dump())

    def current(self) -> list[PriceOut]:
        return [PriceOut(**p.model_dump()) for p in self.book.current()]
