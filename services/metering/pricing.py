"""Cost of a usage event from the catalog's price table (USD per million tokens)."""

from __future__ import annotations

from shared.catalog import Catalog
from shared.events import UsageEvent

UNPRICED = "unpriced"


class Pricer:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def cost(self, event: UsageEvent) -> tuple[float, str]:
        """``(cost_usd, price_version)``; models outside the catalog cost 0 and say so."""
        entry = self.catalog.models.get(event.model)
        if entry is None or entry.provider != event.provider:
            return 0.0, UNPRICED
        cached = min(event.cached_tokens, event.prompt_tokens)
        cached_price = entry.cached_input if entry.cached_input is not None else entry.input
        micro = (
            (event.prompt_tokens - cached) * entry.input
            + cached * cached_price
            + event.completion_tokens * entry.output
        )
        return micro / 1_000_000, self.catalog.version
