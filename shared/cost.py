"""The cost of a request from its token counts and a price (USD per million tokens): one
formula for metering (what is stored) and the edge (what a budget's reservation settles to)."""

from __future__ import annotations

from typing import Protocol


class Rates(Protocol):
    @property
    def input(self) -> float: ...
    @property
    def output(self) -> float: ...
    @property
    def cached_input(self) -> float | None: ...
    @property
    def cache_write(self) -> float | None: ...
    @property
    def reasoning(self) -> float | None: ...


def cost_usd(
    rates: Rates,
    *,
    prompt: int,
    completion: int,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
) -> float:
    """Cache reads and writes are part of ``prompt``, reasoning part of ``completion``; each is
    billed at its own rate where the price has one."""
    cached = min(cached, prompt)
    cache_write = min(cache_write, prompt - cached)
    reasoning = min(reasoning, completion)
    micro = (
        (prompt - cached - cache_write) * rates.input
        + cached * (rates.cached_input if rates.cached_input is not None else rates.input)
        + cache_write * (rates.cache_write if rates.cache_write is not None else rates.input)
        + (completion - reasoning) * rates.output
        + reasoning * (rates.reasoning if rates.reasoning is not None else rates.output)
    )
    return micro / 1_000_000
