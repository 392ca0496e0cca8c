"""An aiohttp server in a thread of its own, so tests stay synchronous; every simulator uses it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    """One request a simulator received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""  # the body's bytes, where the simulator keeps them


@dataclass
class LongStream:
    """A slow stream of many chunks (``*-long`` models): did it run to its end, or did the
    peer go away?"""

    chunks_sent: int = 0
    completed: bool = False
    cancelled: bool = False

    async def run(self, send: Callable[[int], Awaitable[None]], chunks: int = 200, interval: float = 0.02) -> None:
        try:
            for i in range(chunks):
                await send(i)
                self.chunks_sent += 1
                await asyncio.sleep(interval)
            self.completed = True
        except (ConnectionResetError, asyncio.CancelledError):
            self.cancelled = True
            raise


@dataclass
class ProviderState:
    """What a provider simulator saw: its requests, and its ``*-long`` streams."""

    requests: list[Recorded] = field(default_factory=list)
    long_streams: list[LongStream] = field(default_factory=list)
    slow_seconds: float = 5.0


class ThreadedServer:
    name = "simulator"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the provider's own SDK takes as base URL."""
        return self.origin

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                app = web.Application(client_max_size=64 * 1024 * 1024)
                self.routes(app)
                self._runner = web.AppRunner(app, handler_cancellation=True)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                server = site._server
                assert server is not None and server.sockets
                self.port = server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"{self.name} did not start: {failure}")

    def call(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
