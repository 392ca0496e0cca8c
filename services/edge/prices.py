"""What a request costs, as this edge knows it: the catalog's price of its model (in the
route table), or a price set at run time (metering's, in the prices bucket this edge
mirrors), and the kind of request where that changes the rate.

A budget reserves and settles at these prices; metering stores the same (its book holds the
same prices by the same effective times). A request whose model has no price is not admitted
under a budget unless an admin allowed that model unpriced (services/edge/admission.py).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from shared.bus import Bus, KVMirror
from shared.catalog import Route, RouteTable
from shared.cost import PriceSpec, Tokens, cost_usd
from shared.messages import PriceOut, PricesInForce
from shared.subjects import PRICES_BUCKET, PRICES_KEY

log = logging.getLogger("switchyard.edge.prices")

# The request fields that choose a price variant, and the values each variant is named by.
# OpenAI (and OpenAI-shaped Gemini) take ``service_tier``; "priority" was renamed "fast" in
# 2026 and both are accepted (developers.openai.com/api/docs/guides/fast-mode). Anthropic's
# fast mode is ``speed: "fast"`` (platform.claude.com/docs/build-with-claude/fast-mode).
_TIERS = frozenset({"default", "flex", "priority", "fast", "ultrafast", "scale"})


def price_context(body: dict[str, Any], dropped: Collection[str] = ()) -> str:
    """The request's kind where it changes the price (shared.cost): ``service_tier=flex``,
    ``speed=fast``; "" for a standard request. A field the provider could not honour and the
    gateway dropped (``x-switchyard-drop-params``) never reached it: it does not count."""
    kinds = []
    tier = body.get("service_tier")
    if isinstance(tier, str) and tier in _TIERS and "service_tier" not in dropped:
        kinds.append(f"service_tier={tier}")
    if body.get("speed") == "fast" and "speed" not in dropped:
        kinds.append("speed=fast")
    return ",".join(kinds)


class EdgePrices:
    def __init__(self, bus: Bus) -> None:
        self.mirror = KVMirror(bus, PRICES_BUCKET, self._load)
        self._by_model: dict[tuple[str, str], list[PriceOut]] = {}
        self._starts: dict[tuple[str, str], list[float]] = {}
        self._allowed: frozenset[str] = frozenset()

    def _load(self, entries: dict[str, bytes]) -> None:
        raw = entries.get(PRICES_KEY)
        if raw is None:
            held = PricesInForce()
        else:
            try:
                held = PricesInForce.model_validate_json(raw)
            except ValidationError as exc:
                log.error("ignoring invalid prices in force: %s", exc)
                return
        by_model: dict[tuple[str, str], list[PriceOut]] = {}
        for price in sorted(held.prices, key=lambda p: p.effective_from):
            by_model.setdefault((price.provider, price.model), []).append(price)
        self._by_model = by_model
        self._starts = {k: [p.effective_from for p in v] for k, v in by_model.items()}
        self._allowed = frozenset(held.allow_unpriced)

    def price(self, route: Route, table: RouteTable, at: float | None = None) -> PriceSpec | None:
        """The price of a request on ``route`` at ``at`` (now): one set at run time that took
        effect by then, else the catalog's; None when neither prices it."""
        key = (route.billed_provider, route.model)
        starts = self._starts.get(key)
        if starts:
            i = bisect.bisect_right(starts, time.time() if at is None else at) - 1
            if i >= 0:
                return self._by_model[key][i]
        entry = table.models.get(route.model)
        if entry is not None and entry.provider == route.billed_provider and entry.priced:
            return entry
        return None

    def cost(self, route: Route | None, table: RouteTable, tokens: Tokens, context: str, at: float) -> float:
        """What a request that started at ``at`` cost (what metering stores for it); 0 when
        nothing prices its model."""
        price = self.price(route, table, at) if route is not None else None
        return cost_usd(price, tokens, context, at) if price is not None else 0.0

    def allows_unpriced(self, route: Route) -> bool:
        """Whether an admin let budgets admit this model with no price."""
        return route.model in self._allowed or f"{route.billed_provider}/{route.model}" in self._allowed
