"""Budget counters raised to the metered spend (services/metering/budgets.py), on a real
nats-server and the embedded ClickHouse engine."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.metering.budgets import BudgetReconciler
from services.metering.sink import Sink
from shared.bus import Bus
from shared.events import UsageEvent
from shared.limits import BUDGET_BUCKET, CounterState
from tests.servers import NatsServer


def test_an_open_counter_is_raised_to_the_metered_spend_past_a_deleted_one(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The listing holds a deleted counter too (its key stays until compaction): reading it
    says it is gone, and the counters after it are still reconciled."""

    async def run() -> None:
        bus = Bus(nats_server.url, "test-metering")
        await bus.connect(deadline=10)
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            now = time.time()
            events = [UsageEvent(event_id=f"req_{i}", ts=now - 60, user="ann", prompt_tokens=10) for i in range(3)]
            assert await sink.insert([(e, 0.25, "v") for e in events]) == 3
            kv = await bus.kv(BUDGET_BUCKET)
            gone = CounterState(scope="user", ident="bob", period_start=now - 3600)
            await kv.put("a-deleted", gone.model_dump_json().encode())
            await kv.delete("a-deleted")
            open_counter = CounterState(scope="user", ident="ann", period_start=now - 3600)
            await kv.put("b-ann", open_counter.model_dump_json().encode())

            assert await BudgetReconciler(bus, sink, every=60).reconcile_once() == 1
            entry = await kv.get("b-ann")
            assert CounterState.model_validate_json(entry.value or b"{}").taken == 0.75
        finally:
            await sink.close()
            await bus.close()

    asyncio.run(run())
