"""Reconciliation: the raw events, the hourly rollup and the usage stream compared, and the
rollup repaired where it differs (docs/analytics.md, "Exact by construction").

The rollup is exact by construction (services/metering/schema.rollup_refresh); this is the
check that it is, and the repair for what construction cannot see: rows written to
``usage_events`` behind metering's back (a manual insert, a restore, a release before 0.2 still
running during an upgrade), or raw rows deleted by hand. Metering runs it over the last hours
every ``GATEWAY_RECONCILE_SECONDS`` and exports what it found
(``switchyard_rollup_difference_groups``); an operator runs it over any window:

    python -m services.metering.reconcile --from 2026-12-01 --to 2026-12-08 [--repair]

with metering's own settings (``GATEWAY_CLICKHOUSE_DSN``, ``GATEWAY_NATS_URL``, ...). The
embedded engine can be opened by one process only: against it, stop metering first (or let
metering's own runs do it).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from services.metering import metrics
from services.metering.commands import moment, open_store
from services.metering.schema import HOURLY_COLUMNS, HOURLY_FROM_RAW, HOURLY_GROUP, HOURLY_TABLE
from services.metering.sink import Sink, whole_hours
from shared import subjects
from shared.bus import Bus

log = logging.getLogger("switchyard.metering.reconcile")

_WIDTH = len(HOURLY_GROUP)
_SUMS = HOURLY_COLUMNS[_WIDTH:]
_RANGE = "hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}"


@dataclass
class Difference:
    hour: str
    user: str
    client_key_id: str
    model: str
    provider: str
    raw: dict[str, float]
    rollup: dict[str, float]


@dataclass
class Report:
    start: str
    end: str
    groups: int = 0  # rollup groups the raw events make in the window
    raw_requests: int = 0
    rollup_requests: int = 0
    raw_tokens: int = 0
    rollup_tokens: int = 0
    differences: list[Difference] = field(default_factory=list)
    repaired: int = 0
    stream_waiting: int | None = None  # events in the usage stream not stored yet (None: not read)

    @property
    def exact(self) -> bool:
        return not self.differences


async def _groups(sink: Sink, sql: str, start: dt.datetime, end: dt.datetime) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    rows = await sink.query(sql, {"start": start, "end": end})
    return {tuple(r[:_WIDTH]): tuple(r[_WIDTH:]) for r in rows}


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    counts_equal = all(int(x) == int(y) for x, y in zip(a[:-1], b[:-1], strict=True))
    return counts_equal and abs(float(a[-1]) - float(b[-1])) <= 1e-9 * max(1.0, abs(float(a[-1])))


async def reconcile(
    sink: Sink, start: dt.datetime, end: dt.datetime, *, repair: bool = False, bus: Bus | None = None
) -> Report:
    """Compare every rollup group of the whole hours from ``start`` to ``end`` with the
    deduplicated raw events; with ``repair``, rewrite the groups that differ from them."""
    start, end = whole_hours(start, end)
    raw_sql = (
        f"{HOURLY_FROM_RAW}WHERE ts >= {{start:DateTime('UTC')}} AND ts < {{end:DateTime('UTC')}}\n"
        f"GROUP BY {', '.join(HOURLY_GROUP)}"
    )
    rollup_sql = f"SELECT {', '.join(HOURLY_COLUMNS)} FROM {HOURLY_TABLE} WHERE {_RANGE}"
    raw = await _groups(sink, raw_sql, start, end)
    rolled = await _groups(sink, rollup_sql, start, end)
    zero = (0,) * len(_SUMS)
    report = Report(start=start.isoformat(), end=end.isoformat(), groups=len(raw))
    index = {name: i for i, name in enumerate(_SUMS)}
    for values, total in ((raw, "raw"), (rolled, "rollup")):
        setattr(report, f"{total}_requests", sum(int(v[index["requests"]]) for v in values.values()))
        setattr(report, f"{total}_tokens", sum(int(v[index["total_tokens"]]) for v in values.values()))
    over: list[tuple[Any, ...]] = []  # groups holding more than their events
    for key in sorted(set(raw) | set(rolled), key=str):
        want, have = raw.get(key, zero), rolled.get(key, zero)
        if _same(want, have):
            continue
        report.differences.append(
            Difference(
                hour=str(key[0]),
                user=str(key[1]),
                client_key_id=str(key[2]),
                model=str(key[3]),
                provider=str(key[4]),
                raw=dict(zip(_SUMS, want, strict=True)),
                rollup=dict(zip(_SUMS, have, strict=True)),
            )
        )
        if int(have[0]) > int(want[0]):
            over.append(key)
    if repair and report.differences:
        await _repair(sink, over, start, end)
        report.repaired = len(report.differences)
    if bus is not None:
        try:
            report.stream_waiting = await bus.stream_messages(subjects.USAGE_STREAM)
        except Exception as exc:
            log.warning("could not read the usage stream: %s", exc)
    metrics.ROLLUP_DIFFERENCES.set(len(report.differences))
    metrics.ROLLUP_RECONCILED.set_to_current_time()
    return report


async def _repair(sink: Sink, over: list[tuple[Any, ...]], start: dt.datetime, end: dt.datetime) -> None:
    """A group short of its events is raised by a refresh (the newer, larger row wins). A group
    holding more than its events (raw rows deleted) cannot be replaced by a smaller row, so its
    rows go first, then the refresh writes it again from what is there."""
    if over:
        await sink.delete_rollup(sorted({k[0] for k in over}), sorted({str(k[1]) for k in over}))
        log.warning("rollup held more than the raw events for %d group(s); rewritten", len(over))
    await sink.refresh_range(start, end)


async def _main(args: argparse.Namespace) -> int:
    from services.metering.settings import MeteringSettings

    sink = await open_store("reconcile")
    if sink is None:
        return 2
    settings = MeteringSettings()
    bus = Bus.for_service(settings, "metering", "switchyard-reconcile")
    try:
        await bus.connect(deadline=2)
    except Exception as exc:
        print(f"NATS not reachable ({exc}); the usage stream is not compared", file=sys.stderr)
        bus = None  # type: ignore[assignment]
    try:
        report = await reconcile(sink, moment(args.start), moment(args.end), repair=args.repair, bus=bus)
    finally:
        await sink.close()
        if bus is not None:
            await bus.close()
    out = asdict(report)
    out["exact"] = report.exact
    print(json.dumps(out, indent=2, default=str))
    return 0 if report.exact or args.repair else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="start", required=True, help="start (ISO 8601, UTC unless it says)")
    parser.add_argument("--to", dest="end", required=True, help="end (ISO 8601)")
    parser.add_argument("--repair", action="store_true", help="rewrite the rollup groups that differ")
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
