"""The metering consumer on a real nats-server and the real embedded ClickHouse engine."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from nats.js.api import DiscardPolicy, RetentionPolicy

from services.metering.consumer import UsageConsumer
from services.metering.prices import Prices
from services.metering.queries import usage_summary
from services.metering.sink import Sink
from shared import subjects
from shared.bus import Bus
from shared.catalog import load_catalog
from shared.events import UsageEvent
from shared.messages import UsageFilter
from tests.servers import NatsServer


def _event(i: int) -> UsageEvent:
    return UsageEvent(
        event_id=f"req_{i:04d}",
        ts=time.time(),
        user="u",
        model="gpt-4o",
        provider="openai",
        prompt_tokens=100,
        completion_tokens=10,
    )


async def _publish(bus: Bus, events: list[UsageEvent]) -> None:
    for e in events:
        await bus.publish_durable(subjects.USAGE_SUBJECT, e.model_dump_json().encode(), msg_id=e.event_id)


def test_crash_after_insert_before_ack_is_stored_once(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()

    async def run() -> None:
        bus = Bus(nats.url, "test-metering")
        await bus.connect(deadline=10)
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        prices = Prices(load_catalog(), sink)
        consumer = UsageConsumer(bus, sink, prices, batch_size=100, batch_wait=0.2, ack_wait=1.0)
        await consumer.setup()
        await _publish(bus, [_event(i) for i in range(10)])
        # Publishing the same ids again is dropped by the stream (Nats-Msg-Id).
        await _publish(bus, [_event(i) for i in range(5)])

        # A first metering process takes the batch, writes it, and dies before acking.
        sub = await bus.pull_consumer(
            subjects.USAGE_STREAM, subjects.USAGE_SUBJECTS, subjects.METERING_DURABLE, ack_wait=1.0
        )
        msgs = await sub.fetch(100, timeout=2)
        assert len(msgs) == 10
        rows = [
            (UsageEvent.model_validate_json(m.data), *prices.book.cost(UsageEvent.model_validate_json(m.data)))
            for m in msgs
        ]
        assert await sink.insert(rows) == 10
        await sub.unsubscribe()

        # The restarted consumer gets the batch again after ack_wait and stores nothing twice.
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        deadline = time.monotonic() + 15
        while consumer.duplicates < 10:
            assert time.monotonic() < deadline, "the unacknowledged batch was not redelivered"
            await asyncio.sleep(0.1)
        await _publish(bus, [_event(i) for i in range(10, 12)])
        while consumer.inserted < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        stop.set()
        await task

        summary = await usage_summary(sink, UsageFilter(period="24h"))
        assert summary.total_requests == 12
        assert summary.prompt_tokens == 1200
        assert await bus.consumer_pending(subjects.USAGE_STREAM, subjects.METERING_DURABLE) == 0
        await bus.close()
        await sink.close()

    try:
        asyncio.run(run())
    finally:
        nats.stop()


def test_clickhouse_down_keeps_events_in_jetstream(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()

    class BrokenSink(Sink):
        """The real sink whose inserts fail until ``healed``: ClickHouse unreachable."""

        healed = False
        failed = 0

        async def insert(self, rows, check=None, *, refresh=True):  # type: ignore[no-untyped-def]
            if not self.healed:
                self.failed += 1
                raise ConnectionError("clickhouse unreachable")
            return await super().insert(rows, check, refresh=refresh)

    async def run() -> None:
        bus = Bus(nats.url, "test-metering")
        await bus.connect(deadline=10)
        sink = BrokenSink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        consumer = UsageConsumer(bus, sink, Prices(load_catalog(), sink), batch_size=100, batch_wait=0.2, ack_wait=5.0)
        await consumer.setup()
        await _publish(bus, [_event(i) for i in range(7)])
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        deadline = time.monotonic() + 20
        while sink.failed < 2:  # the batch was tried, failed, and tried again
            assert time.monotonic() < deadline, "the consumer never tried to store the batch"
            await asyncio.sleep(0.05)
        assert consumer.inserted == 0
        assert await bus.consumer_pending(subjects.USAGE_STREAM, subjects.METERING_DURABLE) == 7
        sink.healed = True
        while consumer.inserted < 7:
            assert time.monotonic() < deadline, "events were not written after ClickHouse came back"
            await asyncio.sleep(0.1)
        stop.set()
        await task
        assert (await usage_summary(sink, UsageFilter(period="24h"))).total_requests == 7
        await bus.close()
        await sink.close()

    try:
        asyncio.run(run())
    finally:
        nats.stop()


def test_only_a_message_that_may_be_a_repeat_is_looked_up(tmp_path: Path) -> None:
    """A first delivery is stored without a lookup; an event an edge replays from its spool
    (marked so) is looked up, and one stored already is not stored again, also when it comes
    after the stream's duplicate window."""
    nats = NatsServer(tmp_path / "nats")
    nats.start()

    async def run() -> None:
        bus = Bus(nats.url, "test-metering")
        await bus.connect(deadline=10)
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        consumer = UsageConsumer(bus, sink, Prices(load_catalog(), sink), batch_size=100, batch_wait=0.2)
        # A short duplicate window, so that a replay comes after it, as one may in production
        # (made first: metering keeps the settings of a stream it finds).
        await bus.ensure_stream(subjects.USAGE_STREAM, [subjects.USAGE_SUBJECTS], work_queue=True, duplicate_window=0.5)
        await consumer.setup()
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        deadline = time.monotonic() + 20
        try:
            await _publish(bus, [_event(i) for i in range(5)])
            while consumer.inserted < 5:
                assert time.monotonic() < deadline, "the events were not stored"
                await asyncio.sleep(0.05)
            assert sink.lookups == 0, "first deliveries are known to be new"

            await asyncio.sleep(0.6)  # past the duplicate window: the stream takes the repeat
            replayed = _event(3)
            await bus.publish_durable(
                subjects.USAGE_SUBJECT, replayed.model_dump_json().encode(), msg_id=replayed.event_id, replayed=True
            )
            while consumer.duplicates < 1:
                assert time.monotonic() < deadline, "the replayed event was not looked up"
                await asyncio.sleep(0.05)
            assert sink.lookups == 1 and consumer.inserted == 5
        finally:
            stop.set()
            await task
        summary = await usage_summary(sink, UsageFilter(period="24h"))
        assert summary.total_requests == 5
        await bus.close()
        await sink.close()

    try:
        asyncio.run(run())
    finally:
        nats.stop()


def test_a_restart_keeps_what_an_operator_set_on_the_streams(nats_server: NatsServer, tmp_path: Path) -> None:
    """Metering (re)creating its streams sets only what it owns: a size and age limit, a
    duplicate window and a placement an operator set by hand stay across restarts (they were
    reset to unlimited); a subject it needs is added, one the operator added is kept; a new
    stream gets the configured limits and refuses, rather than drops, events when full."""

    async def run() -> None:
        bus = Bus(nats_server.url, "test-metering", stream_max_bytes=64 * 1024**2, stream_max_age=7 * 86_400)
        await bus.connect(deadline=10)
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        consumer = UsageConsumer(bus, sink, Prices(load_catalog(), sink), batch_size=100, batch_wait=0.2)
        try:
            await consumer.setup()
            made = (await bus.js.stream_info(subjects.USAGE_STREAM)).config
            assert made.max_bytes == 64 * 1024**2 and made.max_age == 7 * 86_400
            assert made.discard == DiscardPolicy.NEW and made.retention == RetentionPolicy.WORK_QUEUE

            # The operator's own settings (nats stream edit), and an extra subject.
            await bus.js.update_stream(
                replace(
                    made,
                    max_bytes=2 * 1024**3,
                    max_age=3 * 86_400,
                    duplicate_window=120,
                    max_msgs=5_000_000,
                    subjects=[*(made.subjects or []), "ops.usage.replayed"],
                )
            )
            for _ in range(2):  # restarts, with other defaults configured
                restarted = Bus(nats_server.url, "test-metering-2", stream_max_bytes=1024, stream_max_age=60)
                await restarted.connect(deadline=10)
                try:
                    await UsageConsumer(
                        restarted, sink, Prices(load_catalog(), sink), batch_size=100, batch_wait=0.2
                    ).setup()
                finally:
                    await restarted.close()
            kept = (await bus.js.stream_info(subjects.USAGE_STREAM)).config
            assert (kept.max_bytes, kept.max_age, kept.duplicate_window, kept.max_msgs) == (
                2 * 1024**3,
                3 * 86_400,
                120,
                5_000_000,
            )
            assert set(kept.subjects or []) == {subjects.USAGE_SUBJECTS, "ops.usage.replayed"}

            # A subject it needs and the stream lacks is added; nothing else changes.
            await bus.js.update_stream(replace(kept, subjects=["ops.usage.replayed"]))
            await consumer.setup()
            again = (await bus.js.stream_info(subjects.USAGE_STREAM)).config
            assert set(again.subjects or []) == {subjects.USAGE_SUBJECTS, "ops.usage.replayed"}
            assert again.max_bytes == 2 * 1024**3
        finally:
            await bus.close()
            await sink.close()

    asyncio.run(run())


@contextlib.asynccontextmanager
async def _running(consumer: UsageConsumer) -> AsyncIterator[None]:
    """The consumer's loop, stopped (its held messages flushed) on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def _all_acknowledged(bus: Bus, stored: Callable[[], bool], what: str) -> None:
    """Wait until ``stored()`` and nothing is left unacknowledged on the usage consumer."""
    deadline = time.monotonic() + 30
    while not stored() or await bus.consumer_pending(subjects.USAGE_STREAM, subjects.METERING_DURABLE):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def test_messages_are_acknowledged_only_once_their_rollup_is_refreshed(nats_server: NatsServer, tmp_path: Path) -> None:
    """The refresh of a batch's rollup groups may come seconds after its insert; its
    messages are held unacknowledged until then. A refresh that fails gives them back, and
    their redelivery is refreshed: an empty stream means an exact rollup."""

    class FlakyRefresh(Sink):
        failures = 1

        async def refresh(self, touched):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise ConnectionError("clickhouse went away mid-refresh")
            await super().refresh(touched)

    async def run() -> None:
        bus = Bus(nats_server.url, "test-metering")
        await bus.connect(deadline=10)
        sink = FlakyRefresh(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        consumer = UsageConsumer(
            bus, sink, Prices(load_catalog(), sink), batch_size=100, batch_wait=0.2, ack_wait=3.0, refresh_every=1.0
        )
        await consumer.setup()
        try:
            async with _running(consumer):
                await _publish(bus, [_event(i) for i in range(10)])
                await _all_acknowledged(bus, lambda: True, "the events were never acknowledged")
            assert sink.failures == 0  # the first refresh failed, and the messages came back
            summary = await usage_summary(sink, UsageFilter(period="24h"))
            assert (summary.total_requests, summary.prompt_tokens) == (10, 1000)
        finally:
            await bus.close()
            await sink.close()

    asyncio.run(run())


def test_a_note_is_kept_only_while_its_request_has_not_ended(nats_server: NatsServer, tmp_path: Path) -> None:
    """Admission notes reach usage_admitted only for requests still open when their window is
    acknowledged: a request whose event came in the same window needs none (most of them)."""

    async def run() -> None:
        bus = Bus(nats_server.url, "test-metering")
        await bus.connect(deadline=10)
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        consumer = UsageConsumer(bus, sink, Prices(load_catalog(), sink), batch_size=100, batch_wait=0.2)
        await consumer.setup()
        ended, still_open = _event(1), _event(2)
        notes = [
            e.model_copy(update={"phase": "admitted", "status": 0, "deadline": e.ts + 60}) for e in (ended, still_open)
        ]
        lines = [n.model_dump_json().encode() for n in notes] + [ended.model_dump_json().encode()]
        await bus.publish_durable(subjects.USAGE_SUBJECT, b"\n".join(lines), msg_id="batch-1", events=3, notes=2)
        try:
            async with _running(consumer):
                await _all_acknowledged(bus, lambda: consumer.inserted >= 1, "the batch was not stored")
            kept = await sink.query("SELECT event_id, prompt_tokens FROM usage_admitted FINAL", {})
            assert kept == [(still_open.event_id, still_open.prompt_tokens)]
            assert consumer.inserted == 1 and consumer.duplicates == 0  # notes are not events
        finally:
            await bus.close()
            await sink.close()

    asyncio.run(run())
