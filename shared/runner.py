"""Process entry for the bus services: logging, signals, a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from shared.settings import ServiceSettings


def setup_logging(service: str, level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    # Libraries that log request URLs or headers stay quiet below WARNING.
    for noisy in ("httpx", "httpcore", "hvac", "urllib3", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def install_stop_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop``. Call again after loading a library that installs its own
    handlers at the C level (the embedded ClickHouse engine does)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
        loop.add_signal_handler(sig, stop.set)


def run_service(service: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` until SIGTERM/SIGINT sets ``stop``."""
    setup_logging(service, ServiceSettings().log_level)

    async def runner() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        await main(stop)

    asyncio.run(runner())
