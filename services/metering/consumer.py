"""The durable JetStream consumer that writes usage events into ClickHouse.

Batches by size and time, acks only after the insert, naks with backoff while ClickHouse is
unavailable (events wait in JetStream), and moves poison messages to a dead-letter subject.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from pydantic import ValidationError

from services.metering.prices import Prices
from services.metering.sink import Sink
from shared import subjects
from shared.bus import Bus, Msg
from shared.events import UsageEvent

log = logging.getLogger("switchyard.metering.consumer")


class UsageConsumer:
    def __init__(
        self, bus: Bus, sink: Sink, prices: Prices, *, batch_size: int, batch_wait: float, ack_wait: float = 30.0
    ) -> None:
        self.ack_wait = ack_wait
        self.bus = bus
        self.sink = sink
        self.prices = prices
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.inserted = 0
        self.duplicates = 0
        self.dead_lettered = 0

    async def setup(self) -> None:
        await self.bus.ensure_stream(subjects.USAGE_STREAM, [subjects.USAGE_SUBJECTS])
        await self.bus.ensure_stream(subjects.USAGE_DLQ_STREAM, [subjects.USAGE_DEAD_LETTER])

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.bus.pull_consumer(
            subjects.USAGE_STREAM, subjects.USAGE_SUBJECTS, subjects.METERING_DURABLE, ack_wait=self.ack_wait
        )
        try:
            await self._loop(sub, stop)
        finally:
            try:
                await sub.unsubscribe()  # the durable consumer stays; only this reader goes
            except Exception as exc:
                log.debug("unsubscribe failed: %s", exc)

    async def _loop(self, sub, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
        backoff = 1.0
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self.batch_size, timeout=self.batch_wait)
            except nats.errors.TimeoutError:
                continue
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if await self.handle(msgs, retry_in=backoff):
                backoff = 1.0
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def handle(self, msgs: list[Msg], retry_in: float = 1.0) -> bool:
        """Write one batch; True when it was stored (or held nothing storable)."""
        rows: list[tuple[UsageEvent, float, str]] = []
        good: list[Msg] = []
        for msg in msgs:
            try:
                event = UsageEvent.model_validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter(msg, str(exc.errors()[0].get("msg")))
                continue
            cost, version = self.prices.book.cost(event)
            rows.append((event, cost, version))
            good.append(msg)
        if not good:
            return True
        try:
            new = await self.sink.insert(rows)
        except Exception as exc:
            log.warning("ClickHouse insert of %d event(s) failed (%s); will redeliver", len(rows), exc)
            for msg in good:
                await _quiet(msg.nak(delay=retry_in))
            return False
        self.inserted += new
        self.duplicates += len(rows) - new
        for msg in good:
            await _quiet(msg.ack())
        if new != len(rows):
            log.info("stored %d event(s), skipped %d already stored", new, len(rows) - new)
        return True

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        log.error("usage message is not a valid event (%s); moved to %s", reason, subjects.USAGE_DEAD_LETTER)
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
        try:
            await self.bus.publish_durable(subjects.USAGE_DEAD_LETTER, msg.data, msg_id=msg_id or f"dlq-{id(msg)}")
        except Exception as exc:  # keep it in the stream rather than lose it
            log.warning("dead-letter publish failed (%s); leaving message for redelivery", exc)
            await _quiet(msg.nak(delay=5.0))
            return
        self.dead_lettered += 1
        await _quiet(msg.term())


async def _quiet(coro) -> None:  # type: ignore[no-untyped-def]
    try:
        await coro
    except Exception as exc:  # an ack lost on a reconnect is redelivered and deduplicated
        log.debug("ack/nak failed: %s", exc)
