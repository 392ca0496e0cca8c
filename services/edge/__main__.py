"""``python -m services.edge``: ``GATEWAY_EDGE_WORKERS`` uvicorn workers that drain on SIGTERM."""

from __future__ import annotations

import sys

from services.edge.server import Workers, serve
from services.edge.settings import EdgeSettings
from shared import logs


def main() -> int:
    settings = EdgeSettings()
    logs.configure("edge", settings.log_level, settings.log_format)
    if settings.workers == 1:
        serve(settings)
        return 0
    return Workers(settings).run()


if __name__ == "__main__":
    sys.exit(main())
