"""Fetching an image URL (or audio and video by URL, with the type the client declared) for a
provider that cannot take one (Gemini), safely.

Only public addresses are fetched: a host that is, or resolves to, a loopback, private,
link-local (cloud metadata included), shared, multicast or reserved address is refused, on
the first URL and on every redirect, and the connection goes to the address that was checked
(a resolver that refuses such addresses, so DNS rebinding gets nothing either). The size and
the total time are limited. Any failure is a 400 the client can act on.

Operators can allow named ``host:port`` pairs (an internal image server) with
``GATEWAY_MEDIA_FETCH_ALLOW``.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from services.edge.canonical.model import Inline
from services.edge.providers.common import invalid
from shared.errors import GatewayError

MAX_REDIRECTS = 5
# Content types that say nothing of what a file is: taken as the type the client declared.
_GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast and not ip.is_reserved


class _PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses any answer that is not a public address."""

    def __init__(self, allowed: frozenset[tuple[str, int]]) -> None:
        self._inner = DefaultResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if (host, port) in self._allowed:
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
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_PublicOnlyResolver(self.allowed), limit=100, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, headers={"user-agent": "switchyard-media-fetch/0.1"}
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def check_url(self, url: str, param: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid("image URLs must be http(s) URLs with a host.", param, "invalid_image_url")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (parts.hostname, port) in self.allowed:
            return
        try:
            literal = str(ipaddress.ip_address(parts.hostname))
        except ValueError:
            try:  # the legacy numeric forms resolvers accept: 2130706433, 0x7f.1, 127.1
                literal = socket.inet_ntoa(socket.inet_aton(parts.hostname))
            except OSError:
                return  # a name: the resolver checks what it resolves to
        if not is_public(literal):
            raise invalid(
                f"the image URL points at a non-public address ({parts.hostname}); it will not be fetched.",
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
                    if resp.status != 200:
                        raise invalid(
                            f"fetching the image URL failed with HTTP {resp.status}.", param, "invalid_image_url"
                        )
                    mime = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if declared is not None:
                        if mime.split("/")[0] != declared.split("/")[0] and mime not in _GENERIC:
                            raise invalid(
                                f"the URL did not return {declared} (content-type {mime or 'missing'}).",
                                param,
                                "invalid_image_url",
                            )
                        mime = declared  # the client's word for what the bytes are
                    elif not mime.startswith("image/"):
                        raise invalid(
                            f"the image URL did not return an image (content-type {mime or 'missing'}).",
                            param,
                            "invalid_image_url",
                        )
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
                raise invalid(
                    f"could not fetch the image URL: {type(exc).__name__}.", param, "invalid_image_url"
                ) from exc
        raise invalid(f"the image URL redirected more than {MAX_REDIRECTS} times.", param, "invalid_image_url")

    def _too_big(self, param: str) -> GatewayError:
        return invalid(f"the image at the URL is larger than {self.max_bytes} bytes.", param, "invalid_image_url")
