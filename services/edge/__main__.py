"""``python -m services.edge``: uvicorn with ``GATEWAY_EDGE_WORKERS`` worker processes."""

from __future__ import annotations

import uvicorn

from services.edge.settings import EdgeSettings
from shared.runner import setup_logging


def main() -> None:
    settings = EdgeSettings()
    setup_logging("edge", settings.log_level)
    uvicorn.run(
        "services.edge.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
        loop="uvloop",
        http="httptools",
        log_config=None,
    )


if __name__ == "__main__":
    main()
