"""An edge worker: uvicorn on its own ``SO_REUSEPORT`` socket, that drains on SIGTERM
(services/edge/workers.py starts several).

Each worker listens on a socket of its own (the kernel spreads connections over them), so a
worker that stops listening is out of the rotation at once: a connection attempt is refused,
and a load balancer moves on, instead of waiting in a backlog nobody accepts from (which a
socket shared with a parent process that outlives its workers would do).

On SIGTERM a worker drains: ``/readyz`` turns 503, the listener closes, requests and streams
in flight finish (up to ``GATEWAY_DRAIN_SECONDS``), then the app's shutdown flushes usage
events, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import dataclass
from types import FrameType

import uvicorn

from services.edge.settings import EdgeSettings
from services.edge.sockets import listen

log = logging.getLogger("switchyard.edge")


@dataclass
class Drain:
    """Set once a drain starts; the app's ``/readyz`` reads it."""

    started: bool = False


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.drain.started:
            log.info("draining: finishing requests in flight, taking no new ones")
        self.drain.started = True
        super().handle_exit(sig, frame)


def serve(settings: EdgeSettings) -> None:
    """One worker, in this process, until SIGTERM/SIGINT and its drain are done."""
    from services.edge.app import create_app  # each worker builds its app (and its state) itself
    from services.edge.hot import HotPath
    from services.edge.protocol import edge_protocol

    drain = Drain()
    config = uvicorn.Config(
        HotPath(create_app(settings, drain), settings.max_header_bytes),
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=max(int(settings.drain_seconds), 1),
        loop="uvloop",
        http=edge_protocol(settings.header_timeout),
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
        log_config=None,
    )
    server = DrainingServer(config, drain)
    # uvicorn re-raises the stop signal once it has shut down; after a clean drain that
    # must not turn into death by signal: the exit code is 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    server.run(sockets=[listen(settings.host, settings.port)])
    if not server.started:
        sys.exit(3)  # it never served (the app failed to start)
