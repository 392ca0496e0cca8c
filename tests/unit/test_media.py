"""services/edge/media.py against a real listener on loopback: the host is read as the HTTP
client reads it, and the address is checked again as the socket is made, so no spelling of a
loopback or metadata address reaches it; every failed fetch says the same."""

from __future__ import annotations

import asyncio
import socket

import pytest

from services.edge.media import MediaFetcher
from shared.errors import GatewayError

SPELLINGS = [
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/x.png",  # full-width digits
    "http://127\u30020\u30020\u30021:{port}/x.png",  # ideographic full stops
    "http://\u2460\u2461\u2466.\u24ea.\u24ea.\u2460:{port}/x.png",  # circled digits
    "http://127.0.0.1:{port}/x.png",
    "http://2130706433:{port}/x.png",
    "http://[::ffff:127.0.0.1]:{port}/x.png",
]


async def _listener() -> tuple[asyncio.Server, int, list[int]]:
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 4\r\n\r\nPNG!")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_no_spelling_of_a_loopback_address_is_fetched(spelling: str) -> None:
    async def run() -> None:
        server, port, connections = await _listener()
        fetcher = MediaFetcher(max_bytes=1000, timeout=5)
        try:
            with pytest.raises(GatewayError) as exc:
                await fetcher.fetch(spelling.format(port=port), "messages[0].content[0]")
            assert "non-public" in exc.value.message
            assert connections == []
        finally:
            await fetcher.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_the_socket_check_holds_whatever_produced_the_address() -> None:
    fetcher = MediaFetcher(max_bytes=1000, timeout=5, allowed=frozenset({("127.0.0.1", 8081)}))
    refused = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))
    with pytest.raises(OSError, match="non-public"):
        fetcher._socket(refused)
    for allowed in ((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 8081)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 443))):  # fmt: skip
        fetcher._socket(allowed).close()
    with pytest.raises(OSError, match="non-public"):  # allowed is one port, not the host
        fetcher._socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 8082)))


def test_an_allowed_server_is_fetched_and_failures_all_read_the_same() -> None:
    async def run() -> None:
        server, port, connections = await _listener()
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        allowed = frozenset({("127.0.0.1", port), ("127.0.0.1", closed)})
        fetcher = MediaFetcher(max_bytes=1000, timeout=5, allowed=allowed)
        try:
            image = await fetcher.fetch(f"http://\uff11\uff12\uff17.0.0.1:{port}/x.png", "p")
            assert image.mime == "image/png" and connections == [1]
            messages = set()
            for url, declared in (
                (f"http://127.0.0.1:{port}/x.png", "audio/wav"),
                (f"http://127.0.0.1:{closed}/", None),
            ):
                with pytest.raises(GatewayError) as exc:
                    await fetcher.fetch(url, "p", declared)
                messages.add(exc.value.message.replace("audio/wav", "an image"))
            assert len(messages) == 1, messages  # the wrong type and a port that refused: one answer
        finally:
            await fetcher.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())
