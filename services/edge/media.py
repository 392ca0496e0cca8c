"""Fetching an image URL (or audio and video by URL, with the type the client declared) for a
provider that cannot take one (Gemini), safely.

Only public addresses are fetched: a host that is, or resolves to, a loopback, private,
link-local (cloud metadata included), shared, multicast or reserved address is refused, on
the first URL and on every redirect. The host is read as the HTTP client reads it (yarl: IDNA
and Unicode normalisation, so ``127.0.0.1`` spelt in full-width digits or with ideographic
full stops is the loopback address it becomes); a resolver refuses names that resolve to
such addresses (so DNS rebinding gets nothing either); and each address is checked once more
as its socket is made, whatever produced it. The size and the total time are limited. Any
failure is a 400 the client can act on; a fetch that fails
says the same whatever the cause (a refused connection, a status, a content type), so the
gateway cannot be used to probe what answers where.

Operators can allow named ``host:port`` pairs (an internal image server) with
``GATEWAY_MEDIA_FETCH_ALLOW``.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import AddrInfoType
from aiohttp.resolver import DefaultResolver
from yarl import URL

from services.edge.canonical.model import Inline
from services.edge.providers.common import invalid
from shared.errors import GatewayError

MAX_REDIRECTS = 5
# Content types that say nothing of what a file is: taken as the type the client declared.
_GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def _literal(host: str) -> str | None:
    """``host`` as an IP address if it is one, in any spelling resolvers accept (``2130706433``,
    ``0x7f.1``, ``127.1``); None for a name."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast and not ip.is_reserved


class _PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses any answer that is not a public address. The
    addresses of an allowed ``host:port`` are noted, for the socket check."""

    def __init__(self, allowed: frozenset[tuple[str, int]], allowed_addresses: set[tuple[str, int]]) -> None:
        self._inner = DefaultResolver()
        self._allowed = allowed
        self._allowed_addresses = allowed_addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if (host, port) in self._allowed:
            self._allowed_addresses.update((str(r["host"]), port) for r in results)
            return results
        for result in results:
            if not is_public(result["host"]):
                raise _Refused(f"the image host {host!r} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


class _Refused(OSError):
    pass


class MediaFetcher:
    def __init__(self, max_bytes: int, timeout: float, allowed: frozenset[tuple[str, int]] = frozenset()) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allowed = allowed
        # The addresses an allowed host:port stands for: its own if it is a literal address,
        # else what the resolver answered for it.
        self._allowed_addresses = {(_literal(host) or host, port) for host, port in allowed}
        self._session: aiohttp.ClientSession | None = None

    def _socket(self, addr_info: AddrInfoType) -> socket.socket:
        """The last check, as the socket is made: whatever produced the address (a name, a
        literal in any spelling), a non-public one is refused unless allowed."""
        family, kind, proto, _, sockaddr = addr_info
        address, port = str(sockaddr[0]), int(sockaddr[1])
        if not is_public(address) and (address, port) not in self._allowed_addresses:
            raise _Refused("the image URL points at a non-public address")
        return socket.socket(family=family, type=kind, proto=proto)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PublicOnlyResolver(self.allowed, self._allowed_addresses),
                socket_factory=self._socket,
                limit=100,
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, headers={"user-agent": "switchyard-media-fetch/0.1"}
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def check_url(self, url: str, param: str) -> None:
        """Refuse what must not be fetched, reading the host as the HTTP client will."""
        try:
            parsed = URL(url)
            host, scheme, port = parsed.raw_host, parsed.scheme, parsed.port
        except (ValueError, TypeError, UnicodeError):
            host, scheme, port = None, "", None
        if scheme not in ("http", "https") or not host:
            raise invalid("image URLs must be http(s) URLs with a host.", param, "invalid_image_url")
        port = port or (443 if scheme == "https" else 80)
        if (host, port) in self.allowed:
            return
        literal = _literal(host)
        if literal is not None and not is_public(literal):
            raise invalid(
                f"the image URL points at a non-public address ({host}); it will not be fetched.",
                param,
                "invalid_image_url",
            )

    async def fetch(self, url: str, param: str, declared: str | None = None) -> Inline:
        """Download an image (or, with a ``declared`` MIME type, audio or video of that type);
        every failure is a 400 naming the part."""
        try:
            return await asyncio.wait_for(self._fetch(url, param, declared), self.timeout)
        except TimeoutError as exc:
            raise invalid(
                f"fetching the image URL took longer than {self.timeout:g} s.", param, "invalid_image_url"
            ) from exc

    async def _fetch(self, url: str, param: str, declared: str | None) -> Inline:
        for _ in range(MAX_REDIRECTS + 1):
            self.check_url(url, param)
            try:
                async with self._client().get(url, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    mime = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if declared is not None:
                        if resp.status != 200 or (
                            mime.split("/")[0] != declared.split("/")[0] and mime not in _GENERIC
                        ):
                            raise self._failed(param, declared)
                        mime = declared  # the client's word for what the bytes are
                    elif resp.status != 200 or not mime.startswith("image/"):
                        raise self._failed(param, declared)
                    length = resp.content_length
                    if length is not None and length > self.max_bytes:
                        raise self._too_big(param)
                    data = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        data += chunk
                        if len(data) > self.max_bytes:
                            raise self._too_big(param)
                    return Inline(mime=mime, data=base64.b64encode(bytes(data)).decode())
            except GatewayError:
                raise
            except (aiohttp.ClientError, OSError) as exc:
                cause: Any = exc
                while cause is not None and not isinstance(cause, _Refused):
                    cause = cause.__cause__ or cause.__context__
                if cause is not None:
                    raise invalid(f"{cause}; it will not be fetched.", param, "invalid_image_url") from exc
                raise self._failed(param, declared) from exc
        raise invalid(f"the image URL redirected more than {MAX_REDIRECTS} times.", param, "invalid_image_url")

    def _failed(self, param: str, declared: str | None) -> GatewayError:
        """One answer for every way a fetch can fail (no connection, a status, a content type)."""
        what = declared or "an image"
        return invalid(
            f"the URL could not be fetched as {what} (an HTTP 200 answer of that type from a public address).",
            param,
            "invalid_image_url",
        )

    def _too_big(self, param: str) -> GatewayError:
        return invalid(f"the image at the URL is larger than {self.max_bytes} bytes.", param, "invalid_image_url")
