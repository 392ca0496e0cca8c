"""Prices and the cost of a request from its token counts: one formula for metering (what is
stored) and the edge (what a budget reserves and settles to).

A price follows the pricing dataset the catalog is built from (genai-prices): each rate is USD
per million tokens, either one number or a base with long-context tiers (when the prompt has
more tokens than a tier's start, the tier's rate applies to every token of that kind). A
price may have variants that replace some rates for requests of a kind (``processing=batch``,
``service_tier=priority``, ``speed=fast``) and time-of-day windows (off-peak prices).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Tiered(BaseModel):
    """A rate that depends on the prompt's size: ``base`` up to the first tier's start."""

    model_config = ConfigDict(frozen=True)

    base: float = Field(ge=0)
    tiers: tuple[tuple[int, float], ...] = Field(description="(start in prompt tokens, rate), ascending")

    def at(self, prompt_tokens: int) -> float:
        rate = self.base
        for start, tier_rate in self.tiers:
            if prompt_tokens > start:
                rate = tier_rate
        return rate

    @property
    def highest(self) -> float:
        return max([self.base, *(rate for _, rate in self.tiers)])


Rate = float | Tiered
RATE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning")
PRICE_FIELDS = (*RATE_FIELDS, "variants", "windows")


class Rates(BaseModel):
    """Rates in USD per million tokens; None where the price has none (then the next more
    general rate applies: a cache read or write costs the input rate, reasoning the output rate)."""

    input: Rate | None = None
    output: Rate | None = None
    cached_input: Rate | None = None  # cache reads
    cache_write: Rate | None = None  # cache writes (Anthropic's 5-minute TTL)
    cache_write_1h: Rate | None = None  # cache writes with a 1-hour TTL
    reasoning: Rate | None = None  # only where reasoning tokens are billed unlike output


class Variant(Rates):
    """Rates that replace the standard ones for a kind of request (``when``: its
    ``key=value`` pairs, comma separated), from a day on."""

    when: str
    since: dt.date | None = None


class Window(Rates):
    """Rates that replace the standard ones between two times of day (UTC)."""

    start: dt.time
    end: dt.time

    @field_validator("start", "end")
    @classmethod
    def _in_utc(cls, value: dt.time) -> dt.time:
        """A time of day in UTC, said so (``16:30:00Z``): RFC 3339's full-time."""
        if value.tzinfo is not None and value.utcoffset() != dt.timedelta(0):
            value = dt.datetime.combine(dt.date(2000, 1, 3), value).astimezone(dt.UTC).timetz()
        return value.replace(tzinfo=dt.UTC)

    def contains(self, ts: float) -> bool:
        now = dt.datetime.fromtimestamp(ts, dt.UTC).timetz()
        if self.end < self.start:
            return now >= self.start or now < self.end
        return self.start <= now < self.end


class PriceSpec(Rates):
    """A model's price: standard rates, variants by request kind, time-of-day windows."""

    variants: tuple[Variant, ...] = ()  # for each rate, the first that applies wins
    windows: tuple[Window, ...] = ()

    @property
    def priced(self) -> bool:
        return self.input is not None or self.output is not None

    def resolve(self, context: str = "", ts: float | None = None) -> Rates:
        """The rates in force for a request of ``context`` (its ``key=value`` kinds, comma
        separated) at ``ts``: a window's rates if one holds then, over which, rate by rate,
        the first variant that applies."""
        if not self.windows and (not context or not self.variants):
            return self  # the common case: standard rates
        base: Rates = self
        if ts is not None:
            base = next((w for w in self.windows if w.contains(ts)), self)
        rates = {name: getattr(base, name) for name in RATE_FIELDS}
        if context and self.variants:
            kinds = set(context.split(","))
            day = dt.datetime.fromtimestamp(ts, dt.UTC).date() if ts is not None else None
            taken: set[str] = set()
            for variant in self.variants:
                if not set(variant.when.split(",")) <= kinds:
                    continue
                if variant.since is not None and day is not None and day < variant.since:
                    continue
                for name in RATE_FIELDS:
                    value = getattr(variant, name)
                    if value is not None and name not in taken:
                        rates[name] = value
                        taken.add(name)
        return Rates(**rates)


class Tokens(Protocol):
    """A request's token counts: an edge's usage, a usage event."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def cache_write_1h_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...


def rate_at(rate: Rate | None, prompt: int) -> float | None:
    """A rate for a prompt of ``prompt`` tokens (its tier), None where there is none."""
    if rate is None or isinstance(rate, float | int):
        return rate
    return rate.at(prompt)


def spec_fields(price: PriceSpec) -> dict[str, Any]:
    """A price's rates, variants and windows (what a price of any kind shares)."""
    return {name: getattr(price, name) for name in PRICE_FIELDS}


def same_price(a: PriceSpec, b: PriceSpec) -> bool:
    return spec_fields(a) == spec_fields(b)


def cost_usd(price: PriceSpec, tokens: Tokens, context: str = "", ts: float | None = None) -> float:
    """Cache reads and writes are part of the prompt tokens (1-hour writes part of the
    writes), reasoning part of the completion tokens; each is billed at its own rate where the
    price has one. Tiers are chosen by the whole prompt."""
    rates = price.resolve(context, ts)
    prompt, completion = tokens.prompt_tokens, tokens.completion_tokens
    cached = min(tokens.cached_tokens, prompt)
    cache_write = min(tokens.cache_write_tokens, prompt - cached)
    write_1h = min(tokens.cache_write_1h_tokens, cache_write)
    reasoning = min(tokens.reasoning_tokens, completion)
    fresh = rate_at(rates.input, prompt) or 0.0
    out = rate_at(rates.output, prompt) or 0.0
    read = rate_at(rates.cached_input, prompt)
    write = rate_at(rates.cache_write, prompt)
    write_long = rate_at(rates.cache_write_1h, prompt)
    think = rate_at(rates.reasoning, prompt)
    write = fresh if write is None else write
    micro = (
        (prompt - cached - cache_write) * fresh
        + cached * (fresh if read is None else read)
        + (cache_write - write_1h) * write
        + write_1h * (write if write_long is None else write_long)
        + (completion - reasoning) * out
        + reasoning * (out if think is None else think)
    )
    return micro / 1_000_000


def highest(rate: Rate | None) -> float:
    """The most a rate can be (its highest tier): for reservations, which must not fall short."""
    if rate is None:
        return 0.0
    return rate.highest if isinstance(rate, Tiered) else float(rate)


def describe(price: PriceSpec | None, version: str) -> dict[str, Any] | None:
    """A price as ``/v1/models`` and the admin API show it: USD per million tokens at the
    standard rates (a tiered rate's base), the long-context tiers, the variants by name."""
    if price is None or not price.priced:
        return None
    out: dict[str, Any] = {"currency": "USD", "unit": "1M tokens"}
    tiers: dict[int, dict[str, float]] = {}
    for name in RATE_FIELDS:
        rate = getattr(price, name)
        if rate is None:
            continue
        out[name] = rate.base if isinstance(rate, Tiered) else float(rate)
        if isinstance(rate, Tiered):
            for start, tier_rate in rate.tiers:
                tiers.setdefault(start, {})[name] = tier_rate
    if tiers:
        out["tiers"] = [{"above_prompt_tokens": start, **rates} for start, rates in sorted(tiers.items())]
    if price.variants:
        out["variants"] = sorted({v.when for v in price.variants})
    if price.windows:
        out["time_of_day"] = [f"{w.start:%H:%M}-{w.end:%H:%M} UTC" for w in price.windows]
    out["version"] = version
    return out
