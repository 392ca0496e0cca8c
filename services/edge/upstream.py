"""The HTTP client for provider calls: httpx's API over the aiohttp transport.

httpx's own connection pool collapses under concurrency (see docs/performance.md), so the hot
path uses ``httpx-aiohttp``; everything else may use plain httpx.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from services.edge.settings import EdgeSettings
from shared.errors import UPSTREAM, UPSTREAM_TIMEOUT, GatewayError


def upstream_client(settings: EdgeSettings) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.upstream_max_connections,
        max_keepalive_connections=min(256, settings.upstream_max_connections),
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(
        connect=settings.upstream_connect_timeout,
        read=settings.upstream_timeout,
        write=60.0,
        pool=settings.upstream_connect_timeout,
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits, trust_env=False),
        timeout=timeout,
        headers={"user-agent": "switchyard/0.1"},
        follow_redirects=False,
        trust_env=False,
    )


def transport_error(exc: httpx.HTTPError, provider: str) -> GatewayError:
    """Map a transport failure once: a timeout is 504, anything else reaching the provider 502.

    httpx-aiohttp files some aiohttp connection errors (a server that hangs up) under
    ``ConnectTimeout``, so the original aiohttp exception decides.
    """
    cause = exc.__cause__
    timed_out = isinstance(cause, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)) or (
        cause is None and isinstance(exc, httpx.TimeoutException)
    )
    if timed_out:
        return GatewayError(UPSTREAM_TIMEOUT, f"provider {provider!r} did not answer in time")
    return GatewayError(UPSTREAM, f"could not reach provider {provider!r}: {type(cause or exc).__name__}")
