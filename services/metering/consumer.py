"""Durable JetStream consumers that write events into ClickHouse: usage and audit.

Batches by size and time, acks only after the insert, naks with backoff while ClickHouse is
unavailable (events wait in JetStream), and moves poison messages to a dead-letter subject.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.metering import metrics
from services.metering.prices import Prices
from services.metering.sink import Sink, groups
from shared import subjects
from shared.bus import BATCH_HEADER, NOTES_HEADER, REPLAYED_HEADER, Bus, BusUnavailable, Msg
from shared.events import AuditEvent, UsageEvent

log = logging.getLogger("switchyard.metering.consumer")

# A fetch that keeps failing this long is worth a warning (then once a minute while it lasts).
_FETCH_WARN_AFTER = 10.0
_FETCH_WARN_EVERY = 60.0
# Messages asked for at once: a message may hold a batch of events (up to 256 from an edge), so
# a batch of GATEWAY_METERING_BATCH_SIZE events passes its size by at most this many messages.
_FETCH = 64


class BatchConsumer:
    """The loop shared by every event table: subclasses say how to parse and write a batch."""

    stream = ""
    subject = ""
    durable = ""
    table = ""  # for the metrics' label

    def __init__(self, bus: Bus, sink: Sink, *, batch_size: int, batch_wait: float, ack_wait: float = 30.0) -> None:
        self.bus = bus
        self.sink = sink
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.ack_wait = ack_wait
        self.inserted = 0
        self.duplicates = 0
        self.dead_lettered = 0

    def parse(self, data: bytes) -> Any:
        raise NotImplementedError

    def counted(self, rows: list[Any]) -> int:
        """How many of the rows are events (stored once each; the rest of a batch are notes)."""
        return len(rows)

    async def write(self, rows: list[Any], suspect: list[bool]) -> int:
        """Store the rows not stored yet; returns how many were new. ``suspect`` says, row by
        row, which may have been stored already (see :func:`suspect`)."""
        raise NotImplementedError

    async def setup(self) -> None:
        await self.bus.ensure_stream(self.stream, [self.subject], work_queue=True)
        await self.bus.ensure_stream(subjects.USAGE_DLQ_STREAM, [subjects.USAGE_DEAD_LETTER])

    async def settle(self, msgs: list[Msg]) -> bool:
        """Messages whose rows were written: acknowledged now (a subclass may hold them until
        what depends on them is written too, :meth:`flush`)."""
        for msg in msgs:
            await _quiet(msg.ack())
        return True

    def flush_due(self) -> bool:
        return False

    async def flush(self) -> bool:
        """Write what was held and acknowledge its messages; True when nothing is left held."""
        return True

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.bus.pull_consumer(self.stream, self.subject, self.durable, ack_wait=self.ack_wait)
        try:
            await self._loop(sub, stop)
            await self.flush()  # what was written and held: refreshed and acknowledged before going
        finally:
            try:
                await sub.unsubscribe()  # the durable consumer stays; only this reader goes
            except Exception as exc:
                log.debug("unsubscribe failed: %s", exc)

    async def _loop(self, sub, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
        backoff = 1.0
        failing_since: float | None = None  # a fetch failing once is routine (a reconnect)
        warned = 0.0
        while not stop.is_set():
            try:
                msgs = await self.bus.fetch(sub, min(self.batch_size, _FETCH), timeout=self.batch_wait)
            except BusUnavailable as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= _FETCH_WARN_AFTER and now - warned >= _FETCH_WARN_EVERY:
                    warned = now
                    log.warning("cannot fetch from %s for %.0f s (%r); retrying", self.stream, now - failing_since, exc)
                else:
                    log.debug("fetch failed (%r); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if failing_since is not None and warned:
                log.info("fetching from %s again", self.stream)
            failing_since, warned = None, 0.0
            if not msgs:
                await self.flush()  # idle: nothing to wait for
                continue
            msgs += await self._more(sub, sum(_count(m) for m in msgs), stop)
            stored = await self.handle(msgs, retry_in=backoff)
            if stored and self.flush_due():
                stored = await self.flush()
            if stored:
                backoff = 1.0
            else:
                # Wait before the next try, but not past a stop: the batch was nak'ed already.
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 30.0)

    async def _more(self, sub, have: int, stop: asyncio.Event) -> list[Msg]:  # type: ignore[no-untyped-def]
        """The rest of a batch: what arrives within ``batch_wait`` of its first message, up to
        ``batch_size``. A fetch returns what the stream holds at once, a few events under a
        steady load, and every insert costs the engine a part to write and later merge (some
        40 ms of CPU with the embedded engine): one insert per batch window, not per fetch."""
        more: list[Msg] = []
        deadline = time.monotonic() + self.batch_wait
        while have < self.batch_size and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0.01:
                break
            try:
                fetched = await self.bus.fetch(sub, min(self.batch_size - have, _FETCH), timeout=left)
            except BusUnavailable:
                break  # store what was fetched; the loop deals with the bus
            more += fetched
            have += sum(_count(m) for m in fetched)
        return more

    async def handle(self, msgs: list[Msg], retry_in: float = 1.0) -> bool:
        """Write one batch; True when it was stored (or held nothing storable). A message may
        hold one event or a batch of them (one a line); an event that is not valid goes to
        the dead-letter subject alone, and the rest of its message is stored."""
        rows: list[Any] = []
        suspects: list[bool] = []
        good: list[Msg] = []
        for msg in msgs:
            parsed = await self._parse_message(msg)
            if parsed is None:
                continue  # left for redelivery
            rows += parsed
            suspects += [suspect(msg)] * len(parsed)
            good.append(msg)
        if not rows:  # every event of these went to the dead-letter subject: nothing to refresh
            for msg in good:
                await _quiet(msg.ack())
            return True
        try:
            new = await self.write(rows, suspects)
        except Exception as exc:
            metrics.INSERT_FAILURES.labels(self.table).inc()
            log.warning("ClickHouse insert of %d event(s) failed (%s); will redeliver", len(rows), exc)
            for msg in good:
                await _quiet(msg.nak(delay=retry_in))
            return False
        events = self.counted(rows)
        self.inserted += new
        self.duplicates += events - new
        metrics.EVENTS_STORED.labels(self.table).inc(new)
        if new != events:
            metrics.EVENTS_DUPLICATE.labels(self.table).inc(events - new)
            log.info("stored %d event(s), skipped %d already stored", new, events - new)
        return await self.settle(good)

    async def _parse_message(self, msg: Msg) -> list[Any] | None:
        """The rows of a message's events, its invalid ones moved to the dead-letter subject;
        None when one could not be moved (the message is left for redelivery)."""
        batch = (msg.headers or {}).get(BATCH_HEADER)
        lines = msg.data.split(b"\n") if batch else [msg.data]
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "") or f"dlq-{id(msg)}"
        rows = []
        for k, line in enumerate(lines):
            try:
                rows.append(self.parse(line))
            except ValidationError as exc:
                if not await self._dead_letter(line, f"{msg_id}-{k}" if batch else msg_id, exc):
                    await _quiet(msg.nak(delay=5.0))
                    return None
        return rows

    async def _dead_letter(self, data: bytes, msg_id: str, exc: ValidationError) -> bool:
        reason = str(exc.errors()[0].get("msg"))
        log.error(
            "message on %s is not a valid event (%s); moved to %s", self.subject, reason, subjects.USAGE_DEAD_LETTER
        )
        try:
            await self.bus.publish_durable(subjects.USAGE_DEAD_LETTER, data, msg_id=msg_id)
        except Exception as exc:  # keep it in the stream rather than lose it
            log.warning("dead-letter publish failed (%s); leaving message for redelivery", exc)
            return False
        self.dead_lettered += 1
        metrics.EVENTS_DEAD_LETTERED.labels(self.table).inc()
        return True


_NOTE_MARK = b'"phase":"admitted"'
_EVENT_ID = re.compile(rb'"event_id":"([A-Za-z0-9_.:-]{1,200})"')


@dataclass
class Note:
    """An admission note (services/metering/orphans.py) as it came: its id, and its line,
    parsed only if it is kept."""

    event_id: str
    data: bytes
    phase: str = "admitted"

    def read(self) -> UsageEvent | None:
        try:
            event = UsageEvent.model_validate_json(self.data)
        except ValidationError as exc:  # a note is no usage itself: dropped, said
            log.error("an admission note of %s is not valid (%s); dropped", self.event_id, exc.errors()[0].get("msg"))
            return None
        return event if event.phase == "admitted" else None


class UsageConsumer(BatchConsumer):
    """Usage events into usage_events at every batch; their rollup groups refreshed and the
    admission notes stored at most every ``refresh_every`` seconds (each refresh costs the
    engine a scan of the touched groups' events, whatever the batch's size), and only then
    their messages acknowledged: a crash before the refresh redelivers them, and the
    redelivery refreshes (services/metering/schema.rollup_refresh)."""

    stream = subjects.USAGE_STREAM
    subject = subjects.USAGE_SUBJECTS
    durable = subjects.METERING_DURABLE
    table = "usage_events"

    def __init__(
        self,
        bus: Bus,
        sink: Sink,
        prices: Prices,
        *,
        batch_size: int,
        batch_wait: float,
        ack_wait: float = 30.0,
        refresh_every: float = 0.0,
    ) -> None:
        super().__init__(bus, sink, batch_size=batch_size, batch_wait=batch_wait, ack_wait=ack_wait)
        self.prices = prices
        self.refresh_every = refresh_every
        self._held: list[Msg] = []  # written, not yet refreshed and acknowledged
        self._touched: set[tuple[dt.datetime, str]] = set()
        self._notes: dict[str, Note] = {}  # admission notes by event id
        self._ended: set[str] = set()  # event ids whose event was stored in this window
        self._since = 0.0

    def parse(self, data: bytes) -> tuple[UsageEvent | Note, float, str]:
        if _NOTE_MARK in data and (found := _EVENT_ID.search(data, 0, 256)):
            # An admission note: most are dropped unread when their request's event comes in
            # the same window, so only its id is read now (parsing is most of a line's cost).
            return (Note(found.group(1).decode(), data), 0.0, "")
        event = UsageEvent.model_validate_json(data)
        if event.phase != "final":
            return (Note(event.event_id, data), 0.0, "")
        return (event, *self.prices.book.cost(event))

    def counted(self, rows: list[Any]) -> int:
        return sum(1 for row in rows if row[0].phase == "final")

    async def write(self, rows: list[Any], suspect: list[bool]) -> int:
        for row in rows:
            if isinstance(row[0], Note):
                self._notes[row[0].event_id] = row[0]
        final = [(row, s) for row, s in zip(rows, suspect, strict=True) if row[0].phase == "final"]
        if not final:
            return 0
        new = await self.sink.insert([r for r, _ in final], check={r[0].event_id for r, s in final if s}, refresh=False)
        self._touched |= groups([r[0] for r, _ in final])
        self._ended |= {r[0].event_id for r, _ in final}
        return new

    async def settle(self, msgs: list[Msg]) -> bool:
        if not self._held:
            self._since = time.monotonic()
        self._held += msgs
        return True

    def flush_due(self) -> bool:
        return bool(self._held) and time.monotonic() - self._since >= self.refresh_every

    async def flush(self) -> bool:
        if not self._held:
            return True
        held, self._held = self._held, []
        # A note whose request's event is among what is being acknowledged is not needed: the
        # event is stored. Most requests end within the window, so few notes are written.
        read = [note.read() for event_id, note in self._notes.items() if event_id not in self._ended]
        notes = [n for n in read if n is not None]
        touched = self._touched
        self._notes, self._touched, self._ended = {}, set(), set()
        try:
            if notes:
                await self.sink.insert_admitted(notes)
            await self.sink.refresh(touched)
        except Exception as exc:
            metrics.INSERT_FAILURES.labels(self.table).inc()
            log.warning("rollup refresh of %d message(s) failed (%s); will redeliver", len(held), exc)
            for msg in held:
                await _quiet(msg.nak(delay=1.0))
            return False
        for msg in held:
            await _quiet(msg.ack())
        return True


class AuditConsumer(BatchConsumer):
    stream = subjects.AUDIT_STREAM
    subject = subjects.AUDIT_SUBJECT
    durable = subjects.AUDIT_DURABLE
    table = "audit_events"

    def parse(self, data: bytes) -> AuditEvent:
        return AuditEvent.model_validate_json(data)

    async def write(self, rows: list[Any], suspect: list[bool]) -> int:
        return await self.sink.insert_audit(rows)  # few, and published by several services: all checked


def _count(msg: Msg) -> int:
    """How many events a message holds (a batch says so in a header), its admission notes
    left out: a batch is sized by what is inserted at once into usage_events."""
    headers = msg.headers or {}
    value, notes = headers.get(BATCH_HEADER), headers.get(NOTES_HEADER)
    lines = int(value) if value and value.isdigit() else 1
    return max(lines - (int(notes) if notes and notes.isdigit() else 0), 0)


def suspect(msg: Msg) -> bool:
    """Whether a message may hold an event stored already, so that the insert must look first:
    delivered before (a metering process died, or an insert failed, after fetching it), or
    republished by an edge from its spool (its first publish may have been stored with its
    ack lost, and the replay may come after the stream's duplicate window). Any other message
    is its event's first and only delivery: the stream drops repeats of an id within its
    window, and an edge publishes an event again only from its spool."""
    try:
        delivered = msg.metadata.num_delivered
    except Exception:  # no JetStream metadata: look
        return True
    return delivered is None or delivered > 1 or bool((msg.headers or {}).get(REPLAYED_HEADER))


async def _quiet(coro) -> None:  # type: ignore[no-untyped-def]
    try:
        await coro
    except Exception as exc:  # an ack lost on a reconnect is redelivered and deduplicated
        log.debug("ack/nak failed: %s", exc)
