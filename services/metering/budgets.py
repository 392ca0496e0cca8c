"""Budgets reconciled from what was metered: the spend of a key, user or project in a period,
for an edge opening a budget counter, and a loop that raises every open counter's ``taken``
to the metered spend (docs/limits.md).

Only a counter no edge holds a lease on is reconciled: then every edge has flushed what it
settled, and the counter should equal the metered spend. It is raised to it, never lowered:
what a crashed edge settled and never flushed comes back once its lease expires, and an
admin price above the catalog's (edges settle at catalog prices) is caught up with; a counter
ahead of the metered sum waits for metering to store the events.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from services.metering.periodic import every
from services.metering.schema import CORRECTIONS_TABLE, USAGE_TABLE
from services.metering.sink import Sink
from shared.bus import Bus
from shared.limits import BUDGET_BUCKET, CounterState, Scope
from shared.messages import BudgetSpent, BudgetSpentQuery

log = logging.getLogger("switchyard.metering.budgets")

_COLUMN: dict[Scope, str] = {"key": "client_key_id", "user": "user", "project": "project"}


async def metered_spend(sink: Sink, scope: Scope, ident: str, start: float, end: float | None = None) -> float:
    column = _COLUMN[scope]
    params: dict[str, object] = {"ident": ident, "start": start}
    until = ""
    if end is not None:
        params["end"] = end
        until = " AND ts < toDateTime64({end:Float64}, 3, 'UTC')"
    where = f"{column} = {{ident:String}} AND ts >= toDateTime64({{start:Float64}}, 3, 'UTC'){until}"
    # The events' costs, and what re-costing changed of them (services/metering/recost.py).
    rows = await sink.query(
        f"SELECT (SELECT sum(cost_usd) FROM {USAGE_TABLE} FINAL WHERE {where}) + "
        f"(SELECT sum(delta_usd) FROM {CORRECTIONS_TABLE} FINAL WHERE {where})",
        params,
    )
    return float(rows[0][0] or 0.0) if rows else 0.0


class BudgetReconciler:
    def __init__(self, bus: Bus, sink: Sink, every: float) -> None:
        self.bus = bus
        self.sink = sink
        self.every = every

    async def spent(self, query: BudgetSpentQuery) -> BudgetSpent:
        return BudgetSpent(spent_usd=await metered_spend(self.sink, query.scope, query.ident, query.start))

    async def run(self, stop: asyncio.Event) -> None:
        await every(self.every, stop, self._round, "budget reconciliation")

    async def _round(self) -> None:
        raised = await self.reconcile_once()
        if raised:
            log.info("budgets: %d counter(s) raised to the metered spend", raised)

    async def reconcile_once(self) -> int:
        kv = await self.bus.kv(BUDGET_BUCKET, create=False)
        keys = await self.bus.kv_keys(BUDGET_BUCKET)  # each is read below, with its revision
        now, raised = time.time(), 0
        for key in keys:
            for _ in range(16):  # compare-and-set against edges writing the same counter
                try:
                    entry = await kv.get(key)
                except (KeyNotFoundError, KeyDeletedError):  # the listing holds deleted keys too
                    break
                state = CounterState.model_validate_json(entry.value or b"{}")
                if state.scope is None or (state.period_end is not None and state.period_end < now - 3600):
                    break  # not ours to reconcile, or a period long over
                if state.live(now):
                    break  # edges hold leases: spend they settled may not be metered yet
                metered = await metered_spend(self.sink, state.scope, state.ident, state.period_start, state.period_end)
                if metered <= state.taken + 1e-12:
                    break
                update = {"taken": metered, "reconciled_at": now}
                try:
                    await kv.update(
                        key, state.model_copy(update=update).model_dump_json().encode(), last=entry.revision
                    )
                    raised += 1
                    break
                except KeyWrongLastSequenceError:
                    continue
        return raised
