"""Prometheus metrics: what every service exposes, and the ``/metrics`` answer itself.

A process with several workers (the edge) sets ``PROMETHEUS_MULTIPROC_DIR`` before any of them
imports this module: each worker then writes its samples to files there, and whichever worker
answers ``/metrics`` adds up all of them, so a counter counts every request whatever worker
served it. A single process keeps its samples in memory.
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the output and nobody graphs them

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

BUS_CONNECTED = Gauge(
    "switchyard_bus_connected",
    "1 while the process is connected to NATS, 0 while it is not (the lowest of a service's workers)",
    ["service"],
    multiprocess_mode="livemin",
)
BUS_DISCONNECTS = Counter("switchyard_bus_disconnects_total", "Connections to NATS lost", ["service"])
PROCESS_START = Gauge(
    "switchyard_process_start_time_seconds",
    "When the service's process started (seconds since the epoch; the newest of its workers)",
    ["service", "version"],
    multiprocess_mode="livemax",
)


def registry() -> CollectorRegistry:
    """The registry to expose: every worker's files when there are several, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return REGISTRY


def authorized(authorization: str | None, token: str) -> bool:
    """Whether a scrape may read the metrics: always without a token, else with ``Bearer <token>``."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def exposition() -> bytes:
    """The metrics in the Prometheus text format."""
    return generate_latest(registry())
