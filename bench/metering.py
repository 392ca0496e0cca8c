"""Metering benchmark: events per second from JetStream into ClickHouse, and how long a usage
summary over a million events takes. Everything real: nats-server, the consumer, chDB.

    make bench-metering            (or: python -m bench.metering --events 50000)

Figures are printed with a baseline measured in the same run:
- write path: the consumer (fetch, parse, price, dedup check, insert, ack) against a bare
  ``clickhouse-connect`` insert of the same rows (the engine's own ceiling here);
- summary: the usage API's rollup query against the same totals computed from raw events.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from services.metering.consumer import UsageConsumer
from services.metering.prices import Prices
from services.metering.queries import usage_summary
from services.metering.schema import USAGE_COLUMNS, USAGE_TABLE
from services.metering.sink import Sink, _row
from shared import subjects
from shared.bus import BATCH_HEADER, NOTES_HEADER, Bus
from shared.catalog import load_catalog
from shared.events import UsageEvent
from shared.messages import UsageFilter
from tests.servers import NatsServer

MODELS = [(m, e.provider) for m, e in load_catalog().models.items()]


def _events(n: int, prefix: str) -> list[UsageEvent]:
    rnd = random.Random(7)
    now = time.time()
    out = []
    for i in range(n):
        model, provider = MODELS[i % len(MODELS)]
        out.append(
            UsageEvent(
                event_id=f"{prefix}{i:08d}",
                ts=now - rnd.random() * 3600,
                client_key_id=f"key_{i % 50}",
                user=f"user-{i % 100}",
                requested_model=model,
                model=model,
                provider=provider,
                endpoint="chat.completions",
                stream=bool(i % 2),
                prompt_tokens=rnd.randint(10, 4000),
                completion_tokens=rnd.randint(1, 800),
                cached_tokens=rnd.randint(0, 10),
                latency_ms=rnd.random() * 2000,
                edge_instance="edge-bench",
            )
        )
    return out


async def write_path(workdir: Path, n: int, batch: int) -> dict[str, float]:
    nats = NatsServer(workdir / "nats")
    nats.start()
    try:
        bus = Bus(nats.url, "bench-metering")
        await bus.connect(deadline=10)
        sink = Sink(f"chdb://{workdir / 'ch-write'}", retention_days=400)
        await sink.open()
        prices = Prices(load_catalog(), sink)
        consumer = UsageConsumer(bus, sink, prices, batch_size=batch, batch_wait=0.2, ack_wait=60, refresh_every=2.0)
        await consumer.setup()

        events = _events(n, "req_w")
        t0 = time.perf_counter()
        # As the edges publish them: each request's admission note, then its event, in batches
        # of 128 requests (their notes and events in the messages of one or two batches).
        lines: list[bytes] = []
        for e in events:
            note = e.model_copy(update={"phase": "admitted", "status": 0, "deadline": e.ts + 3720})
            lines += [note.model_dump_json().encode(), e.model_dump_json().encode()]
        pending = []
        for k in range(0, len(lines), 256):
            chunk = lines[k : k + 256]
            pending.append(
                await bus.js.publish_async(
                    subjects.USAGE_SUBJECT,
                    b"\n".join(chunk),
                    headers={
                        "Nats-Msg-Id": f"batch-{k}",
                        BATCH_HEADER: str(len(chunk)),
                        NOTES_HEADER: str(len(chunk) // 2),
                    },
                )
            )
        await asyncio.gather(*pending)
        publish_s = time.perf_counter() - t0

        stop = asyncio.Event()
        t0, cpu0 = time.perf_counter(), time.process_time()
        task = asyncio.create_task(consumer.run(stop))
        while consumer.inserted < n or await bus.consumer_pending(subjects.USAGE_STREAM, subjects.METERING_DURABLE):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        consume_s, consume_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        stop.set()
        await task

        # Baseline: the same number of rows straight into a fresh table, no bus, no checks.
        rows = [_row(e, 0.0, "v") for e in _events(n, "req_b")]
        client = sink._connect()
        client.command(f"CREATE TABLE IF NOT EXISTS bench_raw AS {USAGE_TABLE} ENGINE = MergeTree ORDER BY event_id")
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            client.insert("bench_raw", rows[i : i + batch], column_names=USAGE_COLUMNS)
        raw_s = time.perf_counter() - t0
        await bus.close()
        await sink.close()
        return {
            "events": n,
            "publish_s": publish_s,
            "consume_s": consume_s,
            "cpu_s": consume_cpu,
            "raw_insert_s": raw_s,
        }
    finally:
        nats.stop()


async def summary_path(workdir: Path, n: int, repeats: int) -> dict[str, float]:
    sink = Sink(f"chdb://{workdir / 'ch-summary'}", retention_days=400)
    await sink.open()
    client = sink._connect()
    models = ", ".join(f"'{m}'" for m, _ in MODELS)
    providers = ", ".join(f"'{p}'" for _, p in MODELS)
    # 200 client keys of 100 users, each key on its usual model, spread over 29 days.
    t0 = time.perf_counter()
    client.command(
        f"""
        INSERT INTO {USAGE_TABLE} (event_id, ts, schema_version, client_key_id, user, model, provider, endpoint,
            status, prompt_tokens, completion_tokens, total_tokens, cost_usd, price_version, latency_ms)
        SELECT concat('req_s', toString(number)), now64(3) - toIntervalSecond(number % (29 * 86400)), 1,
            concat('key_', toString(number % 200)), concat('user-', toString(number % 200 % 100)),
            [{models}][number % 200 % {len(MODELS)} + 1], [{providers}][number % 200 % {len(MODELS)} + 1],
            'chat.completions',
            if(number % 50 = 0, 502, 200), 100 + number % 3000, 1 + number % 700, 101 + number % 3000 + number % 700,
            (number % 1000) / 1e6, 'bench', number % 2000
        FROM numbers({n})
        """
    )
    fill_s = time.perf_counter() - t0
    # Written behind the consumer's back: the rollup of those hours is recomputed from them, as
    # the reconciliation command does (the cost of rebuilding 29 days of a million events).
    t0 = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    await sink.refresh_range(now - dt.timedelta(days=30), now + dt.timedelta(hours=1))
    refresh_s = time.perf_counter() - t0
    api = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        summary = await usage_summary(sink, UsageFilter(period="30d"))
        api.append(time.perf_counter() - t0)
    assert summary.total_requests == n, summary.total_requests
    # Baseline: the same four aggregates (totals, by model, by provider, by user) from raw events.
    sums = "count(), countIf(status >= 400), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
    where = f"FROM {USAGE_TABLE} FINAL WHERE ts >= now64(3) - toIntervalDay(30)"
    raw = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await sink.query(f"SELECT {sums} {where}", {})
        await sink.query(f"SELECT model, provider, {sums} {where} GROUP BY model, provider", {})
        await sink.query(f"SELECT provider, {sums} {where} GROUP BY provider", {})
        await sink.query(f"SELECT user, {sums} {where} GROUP BY user", {})
        raw.append(time.perf_counter() - t0)
    await sink.close()
    return {
        "events": n,
        "fill_s": fill_s,
        "refresh_s": refresh_s,
        "summary_s": statistics.median(api),
        "raw_s": statistics.median(raw),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="events through the write path")
    parser.add_argument("--batch", type=int, default=5_000, help="consumer batch size")
    parser.add_argument("--summary-events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        work = Path(tmp)
        w = asyncio.run(write_path(work, args.events, args.batch))
        s = asyncio.run(summary_path(work, args.summary_events, args.repeats))
    consumed = w["events"] / w["consume_s"]
    raw = w["events"] / w["raw_insert_s"]
    print("\nmetering write path (JetStream -> consumer -> chDB)")
    print(f"  events                     {w['events']:>12,.0f}")
    print(f"  publish to JetStream       {w['events'] / w['publish_s']:>12,.0f} events/s")
    print(f"  consumer, end to end       {consumed:>12,.0f} events/s   (target >= 5,000)")
    print(
        f"  consumer CPU per event     {w['cpu_s'] * 1000 / w['events']:>12.3f} ms"
        "       (target <= 0.1; each with its admission note)"
    )
    print(f"  baseline: bare insert      {raw:>12,.0f} events/s")
    print(f"  consumer / baseline        {consumed / raw:>12.2f}x")
    print("\nusage summary")
    print(f"  events in ClickHouse       {s['events']:>12,.0f}   (filled in {s['fill_s']:.1f}s)")
    print(f"  rollup rebuilt from them   {s['refresh_s'] * 1000:>12.1f} ms")
    print(f"  /ai/usage/summary (rollup) {s['summary_s'] * 1000:>12.1f} ms (median of {args.repeats})")
    print(f"  baseline: raw-table query  {s['raw_s'] * 1000:>12.1f} ms")
    print(f"  rollup / raw               {s['summary_s'] / s['raw_s']:>12.2f}x")


if __name__ == "__main__":
    main()
