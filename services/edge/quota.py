"""Quota leased from the shared counters: the edge's one seam to them (docs/limits.md).

Each counter (one per limit, scope and window or period) lives in a KV entry. This edge
holds a lease on it: an amount it may hand out to requests without asking anyone. A request
takes what it needs from the lease in memory; only when the lease runs short does the edge
grow it, with a compare-and-set that keeps everything consumed and leased within the limit.
So the common case costs no round trip, and the edges together never admit more than the
limit. Unused quota goes back after ``idle_return`` seconds without requests; leases on
budgets and in-flight slots expire unless renewed, so a crashed edge's reservations come back.

Local bookkeeping per lease: ``avail`` (leased, free), ``reserved`` (taken by requests in
flight), ``used`` (settled, not yet flushed into the counter's ``taken``). Taking and
settling move amounts between the three and never change their sum, which is what the
counter says this edge holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.bus import Bus
from shared.limits import CounterState
from shared.messages import QuotaReclaim, QuotaReturned
from shared.subjects import EDGE_RECLAIM

log = logging.getLogger("switchyard.edge.quota")

T = TypeVar("T")
_EPS = 1e-9
_CAS_TRIES = 64


class QuotaUnavailable(Exception):
    """The shared counter could not be reached (NATS down or slow)."""


@dataclass
class Lease:
    bucket: str
    key: str
    integral: bool  # requests, tokens and slots are whole; dollars are not
    expiring: bool  # budgets and slots: the counter forgets the lease unless it is renewed
    window_end: float | None = None  # per-minute counters: when the minute ends (epoch)
    opened: Callable[[], Awaitable[CounterState]] | None = None  # a new budget counter's start
    limit: float | None = None  # as last enforced (the upkeep renews against it)
    avail: float = 0.0
    reserved: float = 0.0
    used: float = 0.0
    base: float = 0.0  # consumed or leased by everyone else, at the last sync
    valid_until: float = math.inf  # epoch; past it this edge stops spending ``avail``
    last_active: float = field(default_factory=time.monotonic)
    last_grant: float = 0.0
    contended_until: float = 0.0  # monotonic; until then another edge was refused: no growing ahead
    holders: frozenset[str] = frozenset()  # other edges holding leases, at the last refusal
    synced_at: float = 0.0  # epoch of the last write
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refill: asyncio.Task[None] | None = None

    @property
    def held(self) -> float:
        return self.avail + self.reserved + self.used

    def remaining(self, limit: float) -> float:
        """What is left of ``limit`` as this edge knows it (other edges' unused leases count
        as used until they return them)."""
        return max(limit - self.base - self.reserved - self.used, 0.0)

    def usable(self, now: float) -> bool:
        return now < self.valid_until


class Quotas:
    def __init__(
        self,
        bus: Bus,
        instance: str,
        *,
        lease_seconds: float,
        fraction: float,
        idle_return: float,
        timeout: float,
    ) -> None:
        self.bus = bus
        self.me = instance
        self.lease_seconds = lease_seconds
        self.fraction = fraction
        self.idle_return = idle_return
        self.timeout = timeout
        self.leases: dict[str, Lease] = {}
        self._kv: dict[str, KeyValue] = {}

    def lease(
        self,
        bucket: str,
        key: str,
        *,
        integral: bool,
        expiring: bool,
        window_end: float | None = None,
        opened: Callable[[], Awaitable[CounterState]] | None = None,
    ) -> Lease:
        found = self.leases.get(key)
        if found is None:
            found = Lease(bucket, key, integral, expiring, window_end, opened)
            self.leases[key] = found
        return found

    # --- the request path ----------------------------------------------------------------

    def take_local(self, lease: Lease, amount: float) -> bool:
        if lease.avail + _EPS < amount or not lease.usable(time.time()):
            return False
        lease.avail -= amount
        lease.reserved += amount
        lease.last_active = time.monotonic()
        if lease.avail < lease.last_grant / 2 and lease.refill is None:
            lease.refill = asyncio.create_task(self._refill(lease, amount))
        return True

    async def take(self, lease: Lease, amount: float, limit: float) -> bool:
        """Reserve ``amount`` for a request; False if the limit has no room for it. Raises
        :class:`QuotaUnavailable` when the lease is short and the counter cannot be reached."""
        if self.take_local(lease, amount):
            return True
        async with lease.lock:
            if self.take_local(lease, amount):
                return True
            if await self._sync(lease, limit, need=amount):
                return self.take_local(lease, amount)
            holders = lease.holders
        if not holders:
            return False
        # Other edges hold leases: ask them for what they do not use, then try once more.
        await self._reclaim(lease, holders)
        async with lease.lock:
            if self.take_local(lease, amount):
                return True
            if not await self._sync(lease, limit, need=amount):
                return False
        return self.take_local(lease, amount)

    async def _reclaim(self, lease: Lease, holders: frozenset[str]) -> None:
        ask = QuotaReclaim(bucket=lease.bucket, key=lease.key, origin=self.me)
        try:
            await self.bus.gather(
                EDGE_RECLAIM,
                ask,
                QuotaReturned,
                expect=set(holders),
                who=lambda r: r.instance,
                timeout=self.timeout,  # ends as soon as every holder answered
            )
        except Exception as exc:  # the bus is away: the refusal stands
            log.debug("could not reclaim quota on %s: %s", lease.key, exc)

    async def give_back(self, request: QuotaReclaim) -> QuotaReturned:
        """Another edge is refused on a counter this edge holds a lease on: hand back the
        part no request of ours has taken."""
        lease = self.leases.get(request.key)
        if request.origin == self.me or lease is None or lease.limit is None:
            return QuotaReturned(instance=self.me)
        # No growing ahead of need for a while: a refill would take back what the asking edge
        # is about to claim.
        lease.contended_until = time.monotonic() + self.idle_return
        if lease.avail <= 0 and lease.refill is None and not lease.lock.locked():
            return QuotaReturned(instance=self.me)
        # A write of ours may be under way (a refill growing the lease): wait for it, so what
        # it adds goes back too.
        async with lease.lock:
            if lease.avail <= 0:
                return QuotaReturned(instance=self.me)
            returned = max(lease.avail, 0.0)
            try:
                await self._sync(lease, lease.limit, give_back=True)
            except QuotaUnavailable:
                returned = 0.0
        return QuotaReturned(instance=self.me, returned=returned)

    def force(self, lease: Lease, amount: float) -> None:
        """Admit without a lease (fail-open with the counter unreachable): the amount is owed
        and reaches the counter with the next write."""
        lease.avail -= amount
        lease.reserved += amount
        lease.last_active = time.monotonic()

    @staticmethod
    def settle(lease: Lease, reserved: float, actual: float) -> None:
        """A request finished: ``actual`` of its reservation was consumed; the rest is free."""
        lease.reserved -= reserved
        lease.used += actual
        lease.avail += reserved - actual

    async def _refill(self, lease: Lease, amount: float) -> None:
        """Grow the lease ahead of need, so the next requests find it full."""
        try:
            async with lease.lock:
                if lease.avail >= lease.last_grant / 2 or lease.limit is None:
                    return
                if time.monotonic() < lease.contended_until:
                    return  # another edge was refused here lately
                await self._sync(lease, lease.limit, need=amount)
        except QuotaUnavailable:
            pass
        finally:
            lease.refill = None

    async def start(self) -> None:
        await self.bus.serve(EDGE_RECLAIM, None, QuotaReclaim, self.give_back)

    # --- the counter ------------------------------------------------------------------------

    async def _bucket(self, name: str) -> KeyValue:
        kv = self._kv.get(name)
        if kv is None:
            kv = await self.bus.kv(name, create=False)
            self._kv[name] = kv
        return kv

    async def _sync(self, lease: Lease, limit: float, *, need: float = 0.0, give_back: bool = False) -> bool:
        """One compare-and-set on the counter: flush what was consumed, state what this edge
        holds, and grow the lease by at least ``need - avail`` (False if the limit has no room
        for it) or hand its free part back."""
        lease.limit = limit
        # What is handed back leaves the lease now, before any await: a request must not
        # take it from memory while the write that returns it is on its way.
        returning = max(lease.avail, 0.0) if give_back else 0.0
        lease.avail -= returning
        try:
            if not await self._write(lease, limit, need, give_back):
                lease.avail += returning
                return False
            return True
        except BaseException:
            lease.avail += returning
            raise

    async def _write(self, lease: Lease, limit: float, need: float, give_back: bool) -> bool:
        try:
            kv = await self._io(self._bucket(lease.bucket))
            for _ in range(_CAS_TRIES):
                try:
                    entry = await self._io(kv.get(lease.key))
                    revision: int | None = int(entry.revision or 0)
                    state = CounterState.model_validate_json(entry.value or b"{}")
                except KeyNotFoundError:
                    revision = None  # a new counter (a budget's starts from the metered spend)
                    state = await lease.opened() if lease.opened is not None else CounterState()
                verdict = self._plan(lease, state, limit, need, give_back)
                if verdict is None:
                    return False
                grant, flushed, payload = verdict
                try:
                    if revision is None:
                        await self._io(kv.create(lease.key, payload))
                    else:
                        await self._io(kv.update(lease.key, payload, last=revision))
                except KeyWrongLastSequenceError:
                    continue  # another edge wrote first (or made the counter): read again
                self._applied(lease, grant, flushed)
                return True
            raise QuotaUnavailable(f"counter {lease.key} kept changing under {_CAS_TRIES} tries")
        except QuotaUnavailable:
            raise
        except Exception as exc:  # the bus is away or too slow
            raise QuotaUnavailable(str(exc) or type(exc).__name__) from exc

    async def _io(self, step: Awaitable[T]) -> T:
        return await asyncio.wait_for(step, self.timeout)

    def _plan(
        self, lease: Lease, state: CounterState, limit: float, need: float, give_back: bool
    ) -> tuple[float, float, bytes] | None:
        now = time.time()
        others = {edge: held for edge, held in state.live(now).items() if edge != self.me}
        flushed = lease.used
        base = state.taken + flushed + sum(held for held, _ in others.values())
        holding = lease.avail + lease.reserved  # after the flush
        free = limit - base - holding
        grant = 0.0
        if give_back:
            grant = -max(lease.avail, 0.0)
        elif need > 0:
            short = max(need - lease.avail, 0.0)
            if free + _EPS < short:
                lease.base = base
                lease.holders = frozenset(edge for edge, (held, _) in others.items() if held > 0)
                return None
            chunk = max(short, free * self.fraction)
            if lease.integral:
                chunk = math.ceil(chunk - _EPS)
            grant = min(chunk, max(free, 0.0))
        held = max(holding + grant, 0.0)
        expires = now + self.lease_seconds if lease.expiring else (lease.window_end or now) + 120.0
        leases = {**others, self.me: (held, expires)} if held > 0 else dict(others)
        state = state.model_copy(update={"taken": state.taken + flushed, "leases": leases})
        lease.base = base
        return grant, flushed, state.model_dump_json().encode()

    def _applied(self, lease: Lease, grant: float, flushed: float) -> None:
        lease.used -= flushed
        lease.avail += grant
        if lease.avail + lease.reserved < 0:  # consumed beyond the lease: the counter has it all
            lease.avail = -lease.reserved
        if grant > 0:
            lease.last_grant = grant
        lease.synced_at = time.time()
        if lease.expiring:
            lease.valid_until = time.time() + self.lease_seconds * 2 / 3

    async def read(self, bucket: str, key: str) -> CounterState | None:
        """A counter as stored (None if it does not exist yet)."""
        try:
            entry = await self._io((await self._io(self._bucket(bucket))).get(key))
        except KeyNotFoundError:
            return None
        except Exception as exc:
            raise QuotaUnavailable(str(exc) or type(exc).__name__) from exc
        return CounterState.model_validate_json(entry.value or b"{}")

    # --- upkeep ---------------------------------------------------------------------------------

    async def run(self, tick: float = 0.5) -> None:
        """Renew leases that expire, flush what was consumed, hand back what sits idle, and
        forget counters whose minute is over."""
        while True:
            await asyncio.sleep(tick)
            for key, lease in list(self.leases.items()):
                try:
                    await self._upkeep(key, lease)
                except QuotaUnavailable as exc:
                    log.debug("lease upkeep on %s failed: %s", key, exc)

    async def _upkeep(self, key: str, lease: Lease) -> None:
        now, idle = time.time(), time.monotonic() - lease.last_active
        if lease.window_end is not None and now > lease.window_end + 5 and lease.reserved <= 0:
            del self.leases[key]  # the minute is over: its counter expires with the bucket's TTL
            return
        limit = lease.limit
        if limit is None or lease.lock.locked():
            return
        give_back = idle > self.idle_return and lease.avail > 0
        renew = lease.expiring and lease.held > 0 and lease.valid_until - now < self.lease_seconds / 2
        flush = lease.expiring and lease.used > 0 and (idle > 0.2 or now - lease.synced_at > 1.0)
        if not (give_back or renew or flush):
            if lease.held <= 0 and idle > 60:
                del self.leases[key]
            return
        async with lease.lock:
            await self._sync(lease, limit, give_back=give_back)

    async def give_back_all(self) -> None:
        """On shutdown: hand back every free lease and flush what was consumed."""
        for lease in list(self.leases.values()):
            limit = lease.limit
            if limit is None or lease.held <= 0:
                continue
            try:
                async with lease.lock:
                    await self._sync(lease, limit, give_back=True)
            except QuotaUnavailable:
                pass
