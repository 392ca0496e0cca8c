"""The live price book: the catalog's prices, and those set at run time (an admin's, or a
newer pricing dataset's) stored in ClickHouse with the day they took effect.

Metering owns the prices set at run time: it stores them (their history is never rewritten),
puts them in force in its own book, and publishes what is in force to the prices bucket, which
every edge mirrors for its budget reservations (services/edge/prices.py). The admin call that
changes them answers once every live edge holds the change (services/edge/sync.py).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from services.metering.pricing import Price, PriceBook, catalog_prices
from services.metering.sink import Sink
from shared import subjects
from shared.bus import Bus
from shared.catalog import Catalog, load_overlay
from shared.catalog_build import CatalogError, dataset_ids, merge
from shared.cost import RATE_FIELDS, same_price, spec_fields
from shared.errors import INVALID_REQUEST, GatewayError
from shared.messages import CatalogLoad, CatalogLoaded, PriceIn, PriceOut, PricesInForce
from shared.price_dataset import Dataset, from_json

log = logging.getLogger("switchyard.metering.prices")

_RATES = set(RATE_FIELDS)


def _stamp(now: float) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{secrets.token_hex(3)}"


class Prices:
    def __init__(self, catalog: Catalog, sink: Sink, bus: Bus | None = None) -> None:
        self.catalog = catalog
        self.sink = sink
        self.bus = bus  # None: a book that publishes nothing (tools, tests of the book alone)
        self._base = catalog_prices(catalog)
        self.book = PriceBook(self._base)
        self._stored: list[Price] = []

    async def reload(self) -> None:
        self._stored = await self.sink.stored_prices()
        self.book = PriceBook(self._base + self._stored)
        log.info("price book: %d catalog price(s), %d set at run time", len(self._base), len(self._stored))

    def resolve_provider(self, model: str, provider: str | None) -> str:
        if provider:
            if provider not in self.catalog.providers:
                raise GatewayError(INVALID_REQUEST, f"unknown provider {provider!r}", param="provider")
            return provider
        entry = self.catalog.models.get(model)
        if entry is None:
            raise GatewayError(
                INVALID_REQUEST, f"model {model!r} is not in the catalog: name its provider", param="provider"
            )
        return entry.provider

    async def add(self, request: PriceIn) -> PriceOut:
        now = time.time()
        price = Price(
            provider=self.resolve_provider(request.model, request.provider),
            model=request.model,
            effective_from=request.effective_from if request.effective_from is not None else now,
            version=f"admin-{_stamp(now)}",
            source="admin",
            **request.model_dump(include=_RATES),
        )
        await self.sink.insert_prices([price])
        await self.reload()
        await self.publish()
        return PriceOut(**price.model_dump())

    async def load(self, request: CatalogLoad) -> CatalogLoaded:
        """Put a newer dataset's prices, or a list of prices, in force from ``effective_from``
        (default now) for every model whose price they change; and/or replace the models
        allowed unpriced."""
        now = time.time()
        start = request.effective_from if request.effective_from is not None else now
        candidates: list[Price] = []
        version = request.version or f"load-{_stamp(now)}"
        if request.dataset is not None:
            overlay = load_overlay()
            dataset = self._dataset(request.dataset, request.version, overlay)
            version = request.version or dataset.source
            try:
                newer = merge(overlay, dataset)
            except CatalogError as exc:
                raise GatewayError(
                    INVALID_REQUEST, f"the dataset does not fit the catalog: {exc}", param="dataset"
                ) from exc
            candidates += [
                Price(
                    provider=e.provider,
                    model=m,
                    effective_from=start,
                    version=version,
                    source="dataset",
                    **spec_fields(e),
                )
                for m, e in newer.models.items()
                if e.priced
            ]
        for given in request.prices:
            candidates.append(
                Price(
                    provider=self.resolve_provider(given.model, given.provider),
                    model=given.model,
                    effective_from=given.effective_from if given.effective_from is not None else start,
                    version=version,
                    source="admin",
                    **given.model_dump(include=_RATES),
                )
            )
        changed = [p for p in candidates if not self._same(p)]
        if changed:
            await self.sink.insert_prices(changed)
            await self.reload()
        unchanged = len(candidates) - len(changed)
        allowed = await self.publish(request.allow_unpriced)
        log.info("catalog load %s: %d price(s) changed, %d unchanged", version, len(changed), unchanged)
        return CatalogLoaded(
            version=version,
            effective_from=start,
            changed=[f"{p.provider}/{p.model}" for p in changed],
            unchanged=unchanged,
            allow_unpriced=allowed,
        )

    def _same(self, price: Price) -> bool:
        held = self.book.price_at(price.provider, price.model, price.effective_from)
        if held is None:
            return False
        return same_price(held, price)

    @staticmethod
    def _dataset(raw: list[Any] | dict[str, Any], version: str | None, overlay: dict[str, Any]) -> Dataset:
        try:
            if isinstance(raw, dict):  # a catalog_prices.json, as `make catalog` writes it
                return Dataset.model_validate(raw)
            return from_json(raw, dataset_ids(overlay), version or "genai-prices data.json")
        except ValueError as exc:  # pydantic's ValidationError is one
            message = str(exc).splitlines()[0]
            raise GatewayError(INVALID_REQUEST, f"not a pricing dataset: {message}", param="dataset") from exc

    def in_force(self, allow_unpriced: list[str]) -> PricesInForce:
        """The prices set at run time that hold now or later, for the edges."""
        now = time.time()
        keep = []
        for price in self._stored:
            current = self.book.price_at(price.provider, price.model, now)
            floor = current.effective_from if current is not None else 0.0
            # in force now or later, and not hidden by another of the same moment
            if (
                price.effective_from >= floor
                and self.book.price_at(price.provider, price.model, price.effective_from) is price
            ):
                keep.append(price)
        return PricesInForce(
            prices=[PriceOut(**p.model_dump()) for p in sorted(keep, key=lambda p: (p.provider, p.model))],
            allow_unpriced=sorted(set(allow_unpriced)),
        )

    async def publish(self, allow_unpriced: list[str] | None = None) -> list[str]:
        """Write what is in force to the prices bucket (keeping the models allowed unpriced
        unless given); returns the models allowed unpriced."""
        if self.bus is None:
            return sorted(set(allow_unpriced or []))
        kv = await self.bus.kv(subjects.PRICES_BUCKET)
        if allow_unpriced is None:
            try:
                held = (await kv.get(subjects.PRICES_KEY)).value
                allow_unpriced = PricesInForce.model_validate_json(held).allow_unpriced if held else []
            except Exception:  # no entry yet
                allow_unpriced = []
        payload = self.in_force(allow_unpriced)
        await kv.put(subjects.PRICES_KEY, payload.model_dump_json(exclude_defaults=True).encode())
        return payload.allow_unpriced

    def current(self) -> list[PriceOut]:
        return [PriceOut(**p.model_dump()) for p in self.book.current()]
