"""Limits and budgets: the fields a key, a user or a project carries, budget periods, and the
shared counters edges lease quota from (see docs/limits.md for the design and its bounds).

A counter is one KV entry: what was consumed and flushed (``taken``) and what each edge
holds leased (``leases``: amount and expiry). Whatever an edge admits comes out of its own
lease, and an edge only adds to its lease with a compare-and-set that keeps
``taken + sum(leases) <= limit``; so what all edges admit together never exceeds the limit.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

BudgetPeriod = Literal["day", "week", "month", "total"]
Scope = Literal["key", "user", "project"]
LIMIT_FIELDS = ("rpm", "tpm", "max_parallel", "budget_usd", "budget_period")
SCOPES: tuple[Scope, ...] = ("key", "user", "project")

# Buckets: per-minute and in-flight counters expire on their own; budget counters stay.
RATE_BUCKET = "switchyard_rate"
RATE_BUCKET_TTL = 600.0  # seconds: a minute's counter is useless after its minute
BUDGET_BUCKET = "switchyard_budgets"


class LimitFields(BaseModel):
    """What a key, a user or a project may use. ``None`` is unlimited."""

    rpm: int | None = Field(default=None, ge=1, le=10**9, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, le=10**12, description="tokens per minute, prompt + completion")
    max_parallel: int | None = Field(default=None, ge=1, le=10**6, description="requests in flight")
    budget_usd: float | None = Field(default=None, gt=0, le=10**9, description="spend allowed per period")
    budget_period: BudgetPeriod | None = Field(default=None, description="day, week, month (UTC) or total")

    def limits(self) -> Limits:
        return Limits(
            rpm=self.rpm,
            tpm=self.tpm,
            max_parallel=self.max_parallel,
            budget_usd=self.budget_usd,
            budget_period=self.budget_period or "month",
        )


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod = "month"

    @functools.cached_property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_parallel, self.budget_usd))


NO_LIMITS = Limits()


@dataclass(frozen=True)
class Period:
    """One budget period: ``[start, end)`` in epoch seconds (``end`` None for ``total``)."""

    name: BudgetPeriod
    start: float
    end: float | None

    @property
    def ident(self) -> str:
        if self.name == "total":
            return "total"
        day = dt.datetime.fromtimestamp(self.start, dt.UTC)
        return f"{self.name}{day:%Y%m%d}"


def period_at(name: BudgetPeriod, now: float) -> Period:
    """The calendar period (UTC) holding ``now``; weeks start on Monday."""
    if name == "total":
        return Period(name, 0.0, None)
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    if name == "day":
        first, after = day, day + dt.timedelta(days=1)
    elif name == "week":
        first = day - dt.timedelta(days=day.weekday())
        after = first + dt.timedelta(days=7)
    else:
        first = day.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    return Period(name, _epoch(first), _epoch(after))


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def minute_window(now: float) -> tuple[int, float]:
    """The fixed one-minute window (UTC) holding ``now``: its number and when it ends."""
    window = int(now // 60)
    return window, (window + 1) * 60.0


@functools.lru_cache(maxsize=65536)
def scope_token(scope: Scope, ident: str) -> str:
    """A KV-safe name for a key, user or project (user names may hold any character)."""
    digest = hashlib.sha256(f"{scope}\0{ident}".encode()).hexdigest()[:24]
    return f"{scope}-{digest}"


def rate_key(kind: Literal["rpm", "tpm", "par"], scope: Scope, ident: str, window: int | None = None) -> str:
    token = scope_token(scope, ident)
    return f"{kind}.{token}.{window}" if window is not None else f"{kind}.{token}"


def budget_key(scope: Scope, ident: str, period: Period) -> str:
    return f"budget.{scope_token(scope, ident)}.{period.ident}"


class CounterState(BaseModel):
    """One shared counter as stored in KV."""

    taken: float = 0.0  # consumed and flushed by edges (or reconciled from metered spend)
    leases: dict[str, tuple[float, float]] = {}  # edge instance -> (amount held, expires at, epoch s)
    # What the counter counts, for the reconciler (budgets only).
    scope: Scope | None = None
    ident: str = ""
    period_start: float = 0.0
    period_end: float | None = None
    reconciled_at: float = 0.0

    def live(self, now: float) -> dict[str, tuple[float, float]]:
        return {edge: lease for edge, lease in self.leases.items() if lease[1] > now}

    def committed(self, now: float) -> float:
        """Consumed plus everything leased that has not expired."""
        return self.taken + sum(held for held, _ in self.live(now).values())
