"""Budget periods, per-minute windows and counter arithmetic (shared/limits.py), and the lease
planning of an edge (services/edge/quota.py): what it may add to its lease never takes the
counter past the limit, and settling never changes what it holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import Callable

import pytest

from services.edge.quota import Lease, Quotas
from shared.limits import CounterState, budget_key, minute_window, period_at, rate_key


def _epoch(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_budget_periods_are_calendar_periods_in_utc() -> None:
    now = _epoch(2026, 12, 2, 13, 47)  # a Wednesday
    day = period_at("day", now)
    assert (day.start, day.end) == (_epoch(2026, 12, 2), _epoch(2026, 12, 3))
    week = period_at("week", now)
    assert (week.start, week.end) == (_epoch(2026, 11, 30), _epoch(2026, 12, 7))  # Monday to Monday
    month = period_at("month", now)
    assert (month.start, month.end) == (_epoch(2026, 12, 1), _epoch(2027, 1, 1))
    total = period_at("total", now)
    assert (total.start, total.end, total.ident) == (0.0, None, "total")
    assert period_at("month", _epoch(2027, 1, 1)).ident != month.ident  # a new month, a new counter


def test_minute_windows_and_kv_safe_counter_names() -> None:
    window, end = minute_window(_epoch(2026, 12, 2, 13, 47, 59))
    assert end == _epoch(2026, 12, 2, 13, 48)
    assert minute_window(end)[0] == window + 1
    name = rate_key("rpm", "user", "ann@example.com / ops", window)
    assert name.replace(".", "").replace("-", "").isalnum()
    assert budget_key("user", "a", period_at("day", 0)) != budget_key("project", "a", period_at("day", 0))


def test_expired_leases_no_longer_count() -> None:
    now = time.time()
    state = CounterState(taken=2, leases={"edge-a": (3, now + 5), "edge-b": (4, now - 1)})
    assert state.committed(now) == 5


class _Planner(Quotas):
    """The planning half of an edge's quota keeper, without a bus (each test drives it)."""

    def __init__(self, me: str, fraction: float = 0.25) -> None:
        self.me, self.fraction, self.lease_seconds = me, fraction, 15.0

    async def _refill(self, lease: Lease, amount: float) -> None:
        lease.refill = None  # no growing ahead of need here: the test grows leases itself


def _in_loop(test: Callable[[], None]) -> Callable[[], None]:
    """Run ``test`` inside an event loop (taking from a lease may schedule a refill)."""

    @functools.wraps(test)
    def run() -> None:
        async def body() -> None:
            test()
            await asyncio.sleep(0)

        asyncio.run(body())

    return run


def _grant(quotas: Quotas, lease: Lease, state: CounterState, limit: float, need: float) -> CounterState | None:
    planned = quotas._plan(lease, state, limit, need, give_back=False)
    if planned is None:
        return None
    grant, flushed, payload = planned
    quotas._applied(lease, grant, flushed)
    return CounterState.model_validate_json(payload)


@_in_loop
def test_edges_together_never_lease_more_than_the_limit() -> None:
    state = CounterState()
    edges = {
        name: (_Planner(name), Lease("b", "k", integral=True, expiring=False, window_end=time.time() + 60))
        for name in ("a", "b", "c")
    }
    admitted = 0
    for _ in range(40):  # each edge in turn takes one request at a time, growing its lease as needed
        for quotas, lease in edges.values():
            if quotas.take_local(lease, 1):
                admitted += 1
                continue
            grown = _grant(quotas, lease, state, 10, 1)
            if grown is not None:
                state = grown
                assert quotas.take_local(lease, 1)
                admitted += 1
            assert state.committed(time.time()) <= 10
    assert admitted == 10


@_in_loop
def test_settling_moves_amounts_but_keeps_what_the_edge_holds() -> None:
    quotas, lease = _Planner("a"), Lease("b", "k", integral=False, expiring=True)
    state = _grant(quotas, lease, CounterState(), 1.0, 0.4)
    assert state is not None and lease.avail >= 0.4
    held = lease.held
    assert quotas.take_local(lease, 0.4)
    Quotas.settle(lease, 0.4, 0.05)  # reserved 0.4, cost 0.05
    assert lease.held == pytest.approx(held)
    assert (lease.reserved, lease.used) == (0, 0.05)
    # The next write flushes what was consumed into ``taken`` and states the rest as held.
    planned = quotas._plan(lease, state, 1.0, 0, give_back=True)
    assert planned is not None
    quotas._applied(lease, planned[0], planned[1])
    written = CounterState.model_validate_json(planned[2])
    assert written.taken == pytest.approx(0.05) and "a" not in written.leases  # nothing held: gone
    assert lease.used == 0 and lease.avail == 0


@_in_loop
def test_a_request_that_consumed_beyond_its_reservation_is_owed_in_full() -> None:
    quotas, lease = _Planner("a"), Lease("b", "k", integral=True, expiring=False, window_end=time.time() + 60)
    state = _grant(quotas, lease, CounterState(), 100, 10)
    assert state is not None and quotas.take_local(lease, 10)
    Quotas.settle(lease, 10, 30)  # the provider counted more tokens than estimated
    planned = quotas._plan(lease, state, 100, 0, give_back=True)
    assert planned is not None
    written = CounterState.model_validate_json(planned[2])
    assert written.taken == 30
