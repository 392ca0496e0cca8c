"""The HTTP client for provider calls: aiohttp, chosen by the benchmark (docs/performance.md).

httpx's own connection pool collapses under concurrency, and httpx's API over the aiohttp
transport still spends more per request in httpx than in the transport, so the hot path uses
aiohttp directly. Transport failures are mapped here, once: a timeout is 504, anything else
on the way to the provider 502.
"""

from __future__ import annotations

import asyncio

import aiohttp

from services.edge.settings import EdgeSettings
from shared.errors import UPSTREAM, UPSTREAM_TIMEOUT, GatewayError

TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


def upstream_client(settings: EdgeSettings) -> aiohttp.ClientSession:
    """One pooled session per edge process; call inside the running event loop."""
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_max_connections,
        limit_per_host=0,
        keepalive_timeout=30.0,
        ttl_dns_cache=300,
    )
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.upstream_connect_timeout,
        sock_connect=settings.upstream_connect_timeout,
        sock_read=settings.upstream_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"user-agent": "switchyard/0.1"},
        trust_env=False,
        raise_for_status=False,
    )


def transport_error(exc: BaseException, provider: str) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
        err = GatewayError(UPSTREAM_TIMEOUT, f"provider {provider!r} did not answer in time")
        err.cause = "timeout"
        return err
    err = GatewayError(UPSTREAM, f"could not reach provider {provider!r}: {type(exc).__name__}")
    err.cause = "connect"
    return err
