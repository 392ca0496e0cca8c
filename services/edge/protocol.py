"""The edge's HTTP/1.1 protocol: uvicorn's (httptools), with a deadline on the request head and
its own errors in OpenAI's shape.

uvicorn waits as long as a client likes for a request's headers: a connection that sends one
header line a second (slowloris) holds a connection, a file descriptor and memory for as long
as it cares to. Here the head must be complete within ``GATEWAY_HEADER_READ_TIMEOUT_SECONDS``
of the connection (for its first request) or of the request's first byte (for the next ones
on a kept-alive connection; between requests uvicorn's keep-alive timeout applies). Past it
the client gets a ``408`` and the connection is closed. The body has a deadline of its own
where it is read (services/edge/body.py).

A request HTTP itself cannot parse (a negative or non-numeric ``Content-Length``, a broken
request line) is answered before any application code runs; uvicorn answers it in plain
text, this protocol with a JSON error like every other.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.errors import INVALID_REQUEST, REQUEST_TIMEOUT, ErrorKind, GatewayError

_REASONS = {400: b"Bad Request", 408: b"Request Timeout"}


def _closing_reply(kind: ErrorKind, message: str, code: str) -> bytes:
    body = GatewayError(kind, message, code=code).model_json()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (kind.status, _REASONS[kind.status], len(body))
    ) + body


def edge_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request head takes over
    ``header_timeout`` seconds to arrive (give it to ``uvicorn.Config(http=...)``)."""
    timed_out = _closing_reply(
        REQUEST_TIMEOUT, f"The request's headers did not arrive within {header_timeout:g} s.", "request_timeout"
    )

    class EdgeHttp(HttpToolsProtocol):
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

        def send_400_response(self, msg: str) -> None:
            self._disarm()
            self.transport.write(
                _closing_reply(INVALID_REQUEST, f"{msg} Send a valid HTTP/1.1 request.", "invalid_http")
            )
            self.transport.close()

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.write(timed_out)
                self.transport.close()

    return EdgeHttp
