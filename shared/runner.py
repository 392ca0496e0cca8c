"""Process entry for the bus services: logging, signals, a clean stop."""

from __future__ import annotations

import asyncio
import ctypes
import signal
import sys
from collections.abc import Awaitable, Callable

from shared import logs
from shared.settings import ServiceSettings

_PR_SET_PDEATHSIG = 1
# Looked up once in the parent: the child, between fork and exec, only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """Ask for SIGTERM when the parent dies (Linux; the setting survives exec): a child whose
    supervisor was killed outright stops too. Meant to run in the child between fork and exec."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def install_stop_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop``. Call again after loading a library that installs its own
    handlers at the C level (the embedded ClickHouse engine does)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
        loop.add_signal_handler(sig, stop.set)


def run_service(service: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` until SIGTERM/SIGINT sets ``stop``."""
    settings = ServiceSettings()
    logs.configure(service, settings.log_level, settings.log_format)

    async def runner() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        await main(stop)

    asyncio.run(runner())
