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
    def reasoning_tokens(self) -> int: ...


def cost_usd(rates: Rates, tokens: Tokens) -> float:
    """Cache reads and writes are part of the prompt tokens, reasoning part of the completion
    tokens; each is billed at its own rate where the price has one."""
    prompt, completion = tokens.prompt_tokens, tokens.completion_tokens
    cached = min(tokens.cached_tokens, prompt)
    cache_write = min(tokens.cache_write_tokens, prompt - cached)
    reasoning = min(tokens.reasoning_tokens, completion)
    micro = (
        (prompt - cached - cache_write) * rates.input
        + cached * (rates.cached_input if rates.cached_input is not None else rates.input)
        + cache_write * (rates.cache_write if rates.cache_write is not None else rates.input)
        + (completion - reasoning) * rates.output
        + reasoning * (rates.reasoning if rates.reasoning is not None else rates.output)
    )
    return micro / 1_000_000
