"""``python -m services.edge``: ``GATEWAY_EDGE_WORKERS`` uvicorn workers that drain on SIGTERM
(one serves in this process; more run as child processes of this one)."""

from __future__ import annotations

import logging
import sys

from services.edge.settings import EdgeSettings
from shared import logs


def main() -> int:
    settings = EdgeSettings()
    logs.configure("edge", settings.log_level, settings.log_format)
    problem = settings.identity_problem()  # before any worker starts: one clear error
    if problem is not None:
        logging.getLogger("switchyard.edge").error("%s", problem)
        return 2
    if settings.workers == 1:
        from services.edge.server import serve  # the web stack: only where requests are served

        serve(settings)
        return 0
    from services.edge.workers import Workers

    return Workers(settings).run()


if __name__ == "__main__":
    sys.exit(main())
