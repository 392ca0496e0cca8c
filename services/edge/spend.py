"""A budget's state this period, as the admin and usage APIs show it: read from the budget
counter the edges lease from (spend settled or reconciled from metering, plus reservations)."""

from __future__ import annotations

import time

from services.edge.quota import Quotas, QuotaUnavailable
from shared.bus import Bus
from shared.errors import UNAVAILABLE, GatewayError
from shared.limits import BUDGET_BUCKET, LimitFields, Scope, budget_key, period_at
from shared.messages import BudgetSpent, BudgetSpentQuery, BudgetStatus
from shared.subjects import BUDGET_SPENT


async def metered_spend(bus: Bus, scope: Scope, ident: str, start: float) -> float:
    """What metering stored of a scope's spend since ``start`` (a counter's starting point)."""
    query = BudgetSpentQuery(scope=scope, ident=ident, start=start)
    return (await bus.request(BUDGET_SPENT, query, BudgetSpent, timeout=3.0)).spent_usd


async def budget_status(bus: Bus, quotas: Quotas, scope: Scope, ident: str, fields: LimitFields) -> BudgetStatus | None:
    """None when the scope has no budget. A period no request has opened yet shows the
    metered spend."""
    limits = fields.limits()
    if limits.budget_usd is None:
        return None
    now = time.time()
    period = period_at(limits.budget_period, now)
    try:
        state = await quotas.read(BUDGET_BUCKET, budget_key(scope, ident, period))
    except QuotaUnavailable as exc:
        raise GatewayError(UNAVAILABLE, f"the budget counters cannot be reached: {exc}") from exc
    spent = state.taken if state is not None else await metered_spend(bus, scope, ident, period.start)
    reserved = state.committed(now) - state.taken if state is not None else 0.0
    return BudgetStatus(
        scope=scope,
        id=ident,
        limit_usd=limits.budget_usd,
        period=limits.budget_period,
        spent_usd=round(spent, 9),
        reserved_usd=round(reserved, 9),
        remaining_usd=round(max(limits.budget_usd - spent - reserved, 0.0), 9),
        period_start=period.start,
        resets_at=period.end,
    )
