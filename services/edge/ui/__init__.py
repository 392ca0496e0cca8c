"""The admin dashboard at ``/ui``: static files shipped in the package (no CDN, no build step),
reading the admin API with the key the user signs in with (docs/observability.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
