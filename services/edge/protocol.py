"""The edge's HTTP/1.1 protocol: uvicorn's (httptools), with a deadline on the request head.

uvicorn waits as long as a client likes for a request's headers: a connection that sends one
header line a second (slowloris) holds a connection, a file descriptor and memory for as long
as it cares to. Here the head must be complete within ``GATEWAY_HEADER_READ_TIMEOUT_SECONDS``
of the connection (for its first request) or of the request's first byte (for the next ones
on a kept-alive connection; between requests uvicorn's keep-alive timeout applies). Past it
the client gets a ``408`` and the connection is closed. The body has a deadline of its own
where it is read (services/edge/body.py).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)


def with_header_deadline(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request head takes over
    ``seconds`` to arrive (give it to ``uvicorn.Config(http=...)``)."""

    class HeaderDeadline(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.write(_TIMED_OUT)
                self.transport.close()

    return HeaderDeadline
