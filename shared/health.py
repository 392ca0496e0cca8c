"""``/healthz``, ``/readyz`` and ``/metrics`` of a bus service (router, keyvault, metering) on a
port of its own.

``/healthz`` answers while the process runs. ``/readyz`` is 200 only when every check of the
service passes and no drain has started: an orchestrator stops sending work as soon as the
service is told to stop, and before then, until it can do its work. Its body names each check
and lists the ones failing under ``missing``. ``/metrics`` is the Prometheus text format
(shared/metrics.py), behind a bearer token when ``GATEWAY_METRICS_TOKEN`` is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from shared import metrics
from shared.version import VERSION

log = logging.getLogger("switchyard.health")

Check = Callable[[], Awaitable[bool]]
Gauge = Callable[[], Awaitable[None]]  # brings gauges up to date before a scrape
Detail = Callable[[], Awaitable[Any]]  # a fact /readyz reports without it deciding the answer

_CHECK_TIMEOUT = 2.0


class Health:
    def __init__(self, service: str, host: str, port: int, metrics_token: str = "") -> None:
        self.service = service
        self.host = host
        self.port = port
        self.metrics_token = metrics_token
        self.checks: dict[str, Check] = {}
        self.gauges: list[Gauge] = []
        self.details: dict[str, Detail] = {}
        self.draining = False
        # Set while the process waits to take over from another (services/metering/standby.py):
        # /readyz is 503 with status "standby" and this reason.
        self.standby: str | None = None
        self._runner: web.AppRunner | None = None

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def add_detail(self, name: str, detail: Detail) -> None:
        """Facts ``/readyz`` reports beside its checks without changing the answer (how full
        a stream is): worth an operator's look, not a reason to take the service out."""
        self.details[name] = detail

    def add_gauge(self, update: Gauge) -> None:
        """``update`` runs before each scrape (a gauge read from elsewhere, like consumer lag)."""
        self.gauges.append(update)

    async def start(self) -> int:
        """Serve; returns the port (the one chosen when ``port`` is 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        metrics.PROCESS_START.labels(self.service, VERSION).set_to_current_time()
        log.info(
            "%s health endpoints on http://%s:%d (/healthz, /readyz, /metrics)", self.service, self.host, self.port
        )
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.service})

    async def _readyz(self, _: web.Request) -> web.Response:
        results = await asyncio.gather(*(_run(check) for check in self.checks.values()))
        checks = dict(zip(self.checks, results, strict=True))
        if self.draining:
            checks["draining"] = False
        ready = all(checks.values()) and self.standby is None
        body = {
            "status": "ready" if ready else "not_ready",
            "service": self.service,
            "checks": checks,
            "missing": [name for name, ok in checks.items() if not ok],
        }
        if self.standby is not None:
            body["status"], body["standby"] = "standby", self.standby
        if self.details:
            body["details"] = {name: await _detail(detail) for name, detail in self.details.items()}
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if not metrics.authorized(request.headers.get("authorization"), self.metrics_token):
            return web.json_response(
                {
                    "error": {
                        "message": "GET /metrics wants the metrics token as a bearer token.",
                        "type": "authentication_error",
                        "param": None,
                        "code": "invalid_metrics_token",
                    }
                },
                status=401,
                headers={"www-authenticate": "Bearer"},
            )
        for update in self.gauges:
            try:
                await asyncio.wait_for(update(), timeout=_CHECK_TIMEOUT)
            except Exception as exc:  # a gauge that cannot be read keeps its last value
                log.debug("metrics update failed: %s", exc)
        return web.Response(body=metrics.exposition(), headers={"content-type": metrics.CONTENT_TYPE})


async def _detail(detail: Detail) -> Any:
    try:
        return await asyncio.wait_for(detail(), timeout=_CHECK_TIMEOUT)
    except Exception as exc:
        return {"error": str(exc) or type(exc).__name__}


async def _run(check: Check) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout=_CHECK_TIMEOUT))
    except Exception as exc:  # a failing check is "not ready", never a 500
        log.debug("readiness check failed: %s", exc)
        return False
