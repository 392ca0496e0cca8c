"""``/healthz`` and ``/readyz`` of a bus service (router, keyvault, metering) on a port of its own.

``/healthz`` answers while the process runs. ``/readyz`` is 200 only when every check of the
service passes and no drain has started: an orchestrator stops sending work as soon as the
service is told to stop, and before then, until it can do its work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("switchyard.health")

Check = Callable[[], Awaitable[bool]]

_CHECK_TIMEOUT = 2.0


class Health:
    def __init__(self, service: str, host: str, port: int) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.checks: dict[str, Check] = {}
        self.draining = False
        self._runner: web.AppRunner | None = None

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def start(self) -> int:
        """Serve; returns the port (the one chosen when ``port`` is 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("%s health endpoints on http://%s:%d (/healthz, /readyz)", self.service, self.host, self.port)
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
        ready = all(checks.values())
        body = {"status": "ready" if ready else "not_ready", "service": self.service, "checks": checks}
        return web.json_response(body, status=200 if ready else 503)


async def _run(check: Check) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout=_CHECK_TIMEOUT))
    except Exception as exc:  # a failing check is "not ready", never a 500
        log.debug("readiness check failed: %s", exc)
        return False
