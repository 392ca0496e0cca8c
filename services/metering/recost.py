"""Re-costing: stored usage priced again after a price correction, as new rows.

A usage event keeps the cost and price version it was written with. When a price was wrong
(a dataset fix, a negotiated rate set late, a model that was unpriced), an operator loads the
right price with the effective time it should have had (``POST /ai/prices`` or
``POST /ai/catalog`` with ``effective_from`` in the past), then re-costs the window:

    POST /ai/usage/recost {"from": ..., "to": ..., "model": ..., "dry_run": true}
    python -m services.metering.recost --from 2026-12-01 --to 2026-12-08 [--model M] [--dry-run]

Each event whose cost at today's price book differs from what it stands at is given a row in
``cost_corrections`` (its cost before and after, the difference, both price versions, the
correction's id). Nothing in ``usage_events`` changes; usage summaries and budget spend add
the differences, and the summary's ``by_price_version`` says which price each total used.
Running the same correction again (its ``correction_id``) replaces its rows, so it is safe to
repeat after a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import sys
import time

from services.metering.commands import moment, open_store
from services.metering.pricing import PriceBook
from services.metering.schema import CORRECTION_COLUMNS, CORRECTIONS_TABLE, USAGE_TABLE
from services.metering.sink import Sink
from shared.events import UsageEvent
from shared.messages import RecostQuery, RecostReport

_BATCH = 10_000
_TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
_EPSILON = 1e-12  # below this a difference in USD is float noise, not a correction


async def recost(sink: Sink, book: PriceBook, query: RecostQuery) -> RecostReport:
    correction = (
        query.correction_id or f"recost-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
    )
    params: dict[str, object] = {"start": query.start, "end": query.end, "correction": correction}
    where = "e.ts >= toDateTime64({start:Float64}, 3, 'UTC') AND e.ts < toDateTime64({end:Float64}, 3, 'UTC')"
    for column in ("model", "provider", "user"):
        value = getattr(query, column)
        if value is not None:
            where += f" AND e.{column} = {{{column}:String}}"
            params[column] = value
    # Each event with what it stands at now: its row's cost plus the corrections before this one.
    rows = await sink.query(
        f"SELECT e.event_id, toUnixTimestamp64Milli(e.ts), e.user, e.client_key_id, e.project, e.model, e.provider, "
        f"{', '.join('e.' + t for t in _TOKENS)}, e.price_context, e.cost_usd + c.delta, "
        "if(c.version != '', c.version, e.price_version) "
        f"FROM {USAGE_TABLE} AS e FINAL LEFT JOIN ("
        f"  SELECT event_id, sum(delta_usd) AS delta, argMax(version_after, created_at) AS version "
        f"  FROM {CORRECTIONS_TABLE} FINAL WHERE correction_id != {{correction:String}} GROUP BY event_id"
        f") AS c ON e.event_id = c.event_id WHERE {where} ORDER BY e.ts",
        params,
    )
    changes: list[list[object]] = []
    delta_total = 0.0
    now = dt.datetime.now(dt.UTC)
    for row in rows:
        event_id, ts_ms, user, key, project, model, provider = row[:7]
        tokens = dict(zip(_TOKENS, row[7:13], strict=True))
        context, before, version_before = row[13], float(row[14]), str(row[15])
        event = UsageEvent(
            event_id=event_id, ts=ts_ms / 1000, model=model, provider=provider, price_context=context, **tokens
        )
        after, version_after = book.cost(event)
        if abs(after - before) <= _EPSILON and version_after == version_before:
            continue
        delta_total += after - before
        changes.append(
            [
                correction,
                event_id,
                dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC),
                user,
                key,
                project,
                model,
                provider,
                before,
                after,
                after - before,
                version_before,
                version_after,
                now,
            ]
        )
    if not query.dry_run:
        for i in range(0, len(changes), _BATCH):
            await sink.insert_rows(CORRECTIONS_TABLE, changes[i : i + _BATCH], CORRECTION_COLUMNS)
    return RecostReport(
        correction_id=correction,
        dry_run=query.dry_run,
        events_checked=len(rows),
        events_corrected=len(changes),
        delta_usd=round(delta_total, 10),
    )


async def _main(args: argparse.Namespace) -> int:
    from services.metering.prices import Prices
    from shared.catalog import load_catalog

    sink = await open_store("recost")
    if sink is None:
        return 2
    try:
        prices = Prices(load_catalog(), sink)
        await prices.reload()
        query = RecostQuery(
            start=moment(args.start).timestamp(),
            end=moment(args.end).timestamp(),
            model=args.model,
            provider=args.provider,
            user=args.user,
            dry_run=args.dry_run,
            correction_id=args.correction_id,
        )
        report = await recost(sink, prices.book, query)
    finally:
        await sink.close()
    print(json.dumps(report.model_dump(), indent=2))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="start", required=True, help="start (ISO 8601, UTC unless it says)")
    parser.add_argument("--to", dest="end", required=True, help="end (ISO 8601)")
    parser.add_argument("--model")
    parser.add_argument("--provider")
    parser.add_argument("--user")
    parser.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    parser.add_argument("--correction-id", help="repeat a correction (replaces its rows)")
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
