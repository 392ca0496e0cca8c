"""A small web server with images, for the gateway's image-URL fetching: a PNG, a redirect to
a loopback address the gateway must refuse, a page that is not an image, and an image over
the size limit tests set."""

from __future__ import annotations

import base64

from aiohttp import web

from tests.simulators.server import ThreadedServer

# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
# A RIFF/WAVE header and 8 silent samples: 52 bytes.
WAV = (
    b"RIFF"
    + (44).to_bytes(4, "little")
    + b"WAVEfmt "
    + bytes.fromhex("10000000010001001f4000001f400000010008")
    + b"\x00data"
    + (8).to_bytes(4, "little")
    + b"\x80" * 8
)


class ImageServer(ThreadedServer):
    name = "image-server"

    def __init__(self, private_target: str = "http://127.0.0.1:1/secret") -> None:
        super().__init__()
        self.private_target = private_target
        self.hits: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/pixel.png", self.pixel)
        app.router.add_get("/to-private", self.to_private)
        app.router.add_get("/page.html", self.page)
        app.router.add_get("/huge.png", self.huge)
        app.router.add_get("/clip.wav", self.clip)
        app.router.add_get("/clip.bin", self.clip)

    async def pixel(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(body=PNG, content_type="image/png")

    async def to_private(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        raise web.HTTPFound(self.private_target)

    async def page(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(text="<html></html>", content_type="text/html")

    async def clip(self, request: web.Request) -> web.Response:
        """A short sound, as audio/wav or (``.bin``) with no type beyond octet-stream."""
        self.hits.append(request.path)
        kind = "audio/wav" if request.path.endswith(".wav") else "application/octet-stream"
        return web.Response(body=WAV, content_type=kind)

    async def huge(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(body=PNG + b"\0" * (3 * 1024 * 1024), content_type="image/png")
