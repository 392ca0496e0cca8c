"""Metering's background rounds (budget reconciliation, the rollup check, billing the requests
of edges that died): one round every so many seconds until a stop, a failed round logged and
the next one tried."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("switchyard.metering.periodic")


async def every(seconds: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``work`` every ``seconds`` (never when 0) until ``stop`` is set."""
    while seconds > 0 and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
            return
        except TimeoutError:
            pass
        try:
            await work()
        except Exception as exc:  # the bus or the store is away: next round
            log.warning("%s failed: %s", what, exc)
