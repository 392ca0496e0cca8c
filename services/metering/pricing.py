"""Prices with effective dates, and the cost of a usage event (USD per million tokens).

The price book holds the catalog's current prices, the catalog's price history, and the
prices loaded at run time (an admin's, or a newer dataset's: ``prices`` in ClickHouse); for
an event it picks the newest price of that provider and model that took effect at or before
the event's time, and within it the rates for the event's kind of request (batch, service
tier, fast mode), its prompt's size (long-context tiers) and its time of day (off-peak).
Cost is computed once, when the event is written, and the row keeps the version of the
price used; a correction later is a new row (services/metering/recost.py).
"""

from __future__ import annotations

import bisect
import datetime as dt
from typing import Any, Literal

from pydantic import Field

from shared.catalog import Catalog
from shared.cost import PriceSpec, cost_usd
from shared.events import UsageEvent

UNPRICED = "unpriced"
PriceSource = Literal["catalog", "admin", "dataset"]


class Price(PriceSpec):
    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=256)
    effective_from: float = Field(ge=0, description="seconds since the epoch (UTC)")
    version: str = Field(min_length=1, max_length=128)
    source: PriceSource = "catalog"


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


_SPEC = frozenset(PriceSpec.model_fields)


def _rates(source: PriceSpec) -> dict[str, Any]:
    return {name: getattr(source, name) for name in _SPEC}


def catalog_prices(catalog: Catalog) -> list[Price]:
    """The catalog's price history, then its current prices from ``prices_effective_from``."""
    prices = [
        Price(
            provider=p.provider,
            model=p.model,
            effective_from=_epoch(p.effective_from),
            version=p.version,
            **_rates(p),
        )
        for p in catalog.price_history
    ]
    prices += [
        Price(
            provider=e.provider,
            model=model,
            effective_from=_epoch(e.price_since or catalog.prices_effective_from),
            version=e.price_version or catalog.version,
            **_rates(e),
        )
        for model, e in catalog.models.items()
        if e.priced
    ]
    return prices


class PriceBook:
    def __init__(self, prices: list[Price]) -> None:
        self._by_model: dict[tuple[str, str], list[Price]] = {}
        for price in sorted(prices, key=lambda p: (p.effective_from, p.source == "admin")):
            self._by_model.setdefault((price.provider, price.model), []).append(price)
        self._starts = {k: [p.effective_from for p in v] for k, v in self._by_model.items()}

    def price_at(self, provider: str, model: str, ts: float) -> Price | None:
        key = (provider, model)
        starts = self._starts.get(key)
        if not starts:
            return None
        i = bisect.bisect_right(starts, ts) - 1
        return self._by_model[key][i] if i >= 0 else None

    def current(self) -> list[Price]:
        """The price in force now for every priced model."""
        now = dt.datetime.now(dt.UTC).timestamp()
        out = [self.price_at(provider, model, now) for provider, model in self._by_model]
        return sorted((p for p in out if p is not None), key=lambda p: (p.provider, p.model))

    def cost(self, event: UsageEvent) -> tuple[float, str]:
        """``(cost_usd, price_version)``; a model without a price costs 0 and says so."""
        price = self.price_at(event.provider, event.model, event.ts)
        if price is None or not price.priced:
            return 0.0, UNPRICED
        return cost_usd(price, event, event.price_context, event.ts), price.version
