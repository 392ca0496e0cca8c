"""The edge's usage publisher against a real nats-server that goes away and comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.edge.usage import UsagePublisher
from shared import subjects
from shared.bus import REPLAYED_HEADER, Bus
from shared.events import UsageEvent
from tests.servers import NatsServer


def _event(i: int) -> UsageEvent:
    return UsageEvent(event_id=f"req_{i:04d}", ts=time.time(), prompt_tokens=i)


async def _publisher(nats_server: NatsServer, tmp_path: Path) -> tuple[Bus, UsagePublisher]:
    """A connected bus with the usage stream, and an edge's publisher on it (not yet running)."""
    bus = Bus(nats_server.url, "test-edge")
    await bus.connect(deadline=10)
    await bus.ensure_stream(subjects.USAGE_STREAM, [subjects.USAGE_SUBJECTS])
    return bus, UsagePublisher(bus, tmp_path / "spool", "test")


async def _stored(bus: Bus) -> list[tuple[str, bool]]:
    """(event id, marked as replayed) of every event in the stream, in order."""
    info = await bus.js.stream_info(subjects.USAGE_STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(subjects.USAGE_STREAM, seq)
        replayed = (msg.headers or {}).get(REPLAYED_HEADER) == "1"
        for line in (msg.data or b"").split(b"\n"):  # a message holds a batch of events, one a line
            out.append((UsageEvent.model_validate_json(line).event_id, replayed))
    return out


async def _stored_ids(bus: Bus) -> list[str]:
    return [event_id for event_id, _ in await _stored(bus)]


async def _wait(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def test_spools_while_nats_is_down_and_replays_in_order_once(nats_server: NatsServer, tmp_path: Path) -> None:
    async def run() -> None:
        bus, publisher = await _publisher(nats_server, tmp_path)
        task = asyncio.create_task(publisher.run())
        try:
            for i in range(5):
                publisher.submit(_event(i))
            await _wait(lambda: _done(publisher.published == 5))

            nats_server.stop()
            for i in range(5, 25):
                publisher.submit(_event(i))
            await _wait(
                lambda: _done(
                    publisher.spool_file.exists() and len(publisher.spool_file.read_text().splitlines()) == 20
                )
            )

            nats_server.start()  # same port, same JetStream store
            await _wait(lambda: _done(bus.connected), timeout=30)
            for i in range(25, 30):
                publisher.submit(_event(i))
            await _wait(lambda: _count(bus, 30), timeout=30)
            await _wait(lambda: _done(not list((tmp_path / "spool").glob("usage-*"))), timeout=30)
            stored = await _stored(bus)
            # Every event, in order. A batch the client library held while NATS was away may
            # also have been stored on the reconnect: its events then come again from the
            # spool, marked as replayed, and metering stores each once (test_consumer.py).
            first_seen = list(dict.fromkeys(event_id for event_id, _ in stored))
            assert first_seen == [f"req_{i:04d}" for i in range(30)]
            seen: set[str] = set()
            for event_id, replayed in stored:
                assert event_id not in seen or replayed, f"{event_id} came twice, unmarked"
                seen.add(event_id)

            # An event replayed again goes out marked as replayed (its first publish was part of
            # a batch, under the batch's id), so metering looks it up (tests/unit/test_consumer.py).
            await publisher._publish(_event(3))
            info = await bus.js.stream_info(subjects.USAGE_STREAM)
            last = await bus.js.get_msg(subjects.USAGE_STREAM, info.state.last_seq)
            assert UsageEvent.model_validate_json(last.data or b"").event_id == "req_0003"
            assert (last.headers or {}).get(REPLAYED_HEADER) == "1"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()

    asyncio.run(run())


async def _done(value: bool) -> bool:
    return value


async def _count(bus: Bus, n: int) -> bool:
    try:
        return len(await _stored_ids(bus)) >= n
    except Exception:
        return False


def test_an_event_taken_off_the_queue_is_published_when_the_publisher_is_stopped(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A shutdown that cancels the publisher between taking a batch and publishing it (the
    batching window) still publishes that batch: it is the last request a draining edge
    served."""

    async def run() -> None:
        bus, publisher = await _publisher(nats_server, tmp_path)
        task = asyncio.create_task(publisher.run())
        try:
            publisher.submit(_event(1))
            for _ in range(100_000):  # each loop turn: the window is caught before its timer fires
                if publisher._held:
                    break
                await asyncio.sleep(0)
            assert publisher._held, "the publisher never took the event"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert await _stored_ids(bus) == ["req_0001"]
            assert publisher.published == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()

    asyncio.run(run())


def test_an_event_with_text_that_is_not_unicode_is_stored_and_the_publisher_goes_on(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A lone surrogate in a user name cannot be written as JSON. The event still counts (the
    text replaced), the rest of its batch too, and the publisher keeps publishing."""

    async def run() -> None:
        bus, publisher = await _publisher(nats_server, tmp_path)
        task = asyncio.create_task(publisher.run())
        try:
            bad = UsageEvent(event_id="req_bad", ts=time.time(), user="\ud800", prompt_tokens=7)
            publisher.submit(_event(1))
            publisher.submit(bad)
            publisher.submit(_event(2))
            await _wait(lambda: _done(publisher.published == 3))
            publisher.submit(_event(3))
            await _wait(lambda: _done(publisher.published == 4))
            stored = {}
            info = await bus.js.stream_info(subjects.USAGE_STREAM)
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await bus.js.get_msg(subjects.USAGE_STREAM, seq)
                for line in (msg.data or b"").split(b"\n"):
                    event = UsageEvent.model_validate_json(line)
                    stored[event.event_id] = event
            assert sorted(stored) == ["req_0001", "req_0002", "req_0003", "req_bad"]
            assert stored["req_bad"].user == "?" and stored["req_bad"].prompt_tokens == 7
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()

    asyncio.run(run())


def test_a_spooled_admission_note_and_its_event_both_reach_the_stream(nats_server: NatsServer, tmp_path: Path) -> None:
    """A request's admission note and its event share the event id: replayed one a message
    under that id, the stream took the note and dropped the event as a duplicate (the chaos
    test lost 702 answered requests' events that way, billed as lost)."""

    async def run() -> None:
        bus, publisher = await _publisher(nats_server, tmp_path)
        try:
            publisher.spool_dir.mkdir(parents=True)
            note = _event(7).model_copy(update={"phase": "admitted", "status": 0, "deadline": time.time() + 60})
            await publisher._spool([note, _event(7)])
            await publisher._replay()
            info = await bus.js.stream_info(subjects.USAGE_STREAM)
            phases = [
                UsageEvent.model_validate_json((await bus.js.get_msg(subjects.USAGE_STREAM, seq)).data or b"").phase
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
            ]
            assert phases == ["admitted", "final"]
        finally:
            await bus.close()

    asyncio.run(run())
