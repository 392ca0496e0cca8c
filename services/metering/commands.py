"""What metering's operator commands (``reconcile``, ``recost``) share: opening the usage
store with metering's own settings, and reading the times they are given."""

from __future__ import annotations

import datetime as dt
import sys

from services.metering.sink import Sink


def moment(value: str) -> dt.datetime:
    """An ISO 8601 time (``Z`` or an offset; UTC when it has neither)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


async def open_store(instance: str) -> Sink | None:
    """The usage store metering's settings name, opened; None (said on stderr) when it cannot
    be: the embedded engine opens in one process, so a running metering holds it."""
    from services.metering.settings import MeteringSettings

    settings = MeteringSettings()
    sink = Sink(
        settings.dsn(),
        settings.retention_days,
        audit_retention_days=settings.audit_retention_days,
        cluster=settings.clickhouse_cluster,
        instance=instance,
    )
    try:
        await sink.open()
    except Exception as exc:
        print(f"cannot open the usage store {settings.dsn()!r}: {exc}", file=sys.stderr)
        if settings.dsn().startswith("chdb:"):
            print("the embedded engine is held by a running metering: stop it first", file=sys.stderr)
        return None
    return sink
