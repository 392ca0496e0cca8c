"""Usage events off the request path: an in-memory queue, JetStream, and a disk spool.

A request only puts its event on a queue. A background task gathers what arrives within a few
milliseconds into a batch and publishes it as one JetStream message (the events as JSON lines,
their count in a header) whose ``Nats-Msg-Id`` is the batch's id, fixed when the batch is
formed, so a batch sent again is dropped by the stream. If NATS cannot take a batch, its
events are appended to a local spool file and replayed, in order, once NATS answers again,
marked as replayed; metering looks each replayed event up and stores each event id once, so a
replay never doubles a count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from shared.bus import Bus
from shared.events import UsageEvent
from shared.subjects import USAGE_SUBJECT

log = logging.getLogger("switchyard.edge.usage")

_BATCH = 256
# The publisher waits this long after the first event of a batch: the response that produced
# it goes out first (publishing in the same loop turn added to the request's tail latency),
# and under load the wait gathers a larger batch.
_BATCH_WINDOW = 0.005
_MESSAGE_BYTES = 512 * 1024  # a batch larger than this goes as several messages (NATS takes 1 MiB)


@dataclass
class _Batch:
    id: str  # the Nats-Msg-Id of its (first) message: the same each time the batch is sent
    events: list[UsageEvent]


def _new_batch(events: list[UsageEvent]) -> _Batch:
    return _Batch("usage-" + uuid.uuid4().hex, events)


class UsagePublisher:
    def __init__(self, bus: Bus, spool_dir: Path, instance: str) -> None:
        self.bus = bus
        self.spool_dir = spool_dir
        self.spool_file = spool_dir / f"usage-{instance}.jsonl"
        self._queue: asyncio.Queue[UsageEvent] = asyncio.Queue()
        self.published = 0
        self._spool_pending = False  # a spool file may exist: new events queue behind it
        self._held: _Batch | None = None  # taken off the queue, not yet published or spooled

    def submit(self, event: UsageEvent) -> None:
        """Called on the request path: never blocks, never fails."""
        self._queue.put_nowait(event)

    async def run(self) -> None:
        await asyncio.to_thread(self.spool_dir.mkdir, parents=True, exist_ok=True)
        replay = asyncio.create_task(self._replay_loop())
        try:
            while True:
                self._held = batch = _new_batch([await self._queue.get()])
                await asyncio.sleep(_BATCH_WINDOW)
                while len(batch.events) < _BATCH and not self._queue.empty():
                    batch.events.append(self._queue.get_nowait())
                try:
                    await self._publish_batch(batch)
                except Exception:  # never let one batch stop metering for this edge
                    log.exception("usage batch %s could not be published or spooled", batch.id)
                self._held = None
        finally:
            replay.cancel()
            await self.flush()

    async def flush(self) -> None:
        """Publish (or spool) whatever is held or still queued; used at shutdown. A batch
        whose publishing was cancelled midway is sent again under its own id: the stream
        drops it if its first sending was stored."""
        held, self._held = self._held, None
        rest = []
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        if held is not None:
            await self._publish_batch(held)
        if rest:
            await self._publish_batch(_new_batch(rest))

    async def _publish_batch(self, batch: _Batch) -> None:
        if self._spool_pending:
            # Keep order: while a spool exists, new events queue behind it.
            await self._spool(batch.events)
            return
        lines = [_encoded(e) for e in batch.events]
        failed: list[UsageEvent] = []
        for k, (start, end) in enumerate(_messages(lines)):
            msg_id = batch.id if k == 0 else f"{batch.id}-{k}"
            try:
                await self.bus.publish_durable(
                    USAGE_SUBJECT,
                    b"\n".join(lines[start:end]),
                    msg_id=msg_id,
                    timeout=2.0,
                    events=end - start,
                    notes=sum(1 for e in batch.events[start:end] if e.phase != "final"),
                )
                self.published += end - start
            except Exception:  # NATS did not take it (or did, and its ack was lost: replays are looked up)
                failed.extend(batch.events[start:end])
        if failed:
            log.warning("NATS did not take %d usage event(s); spooling to %s", len(failed), self.spool_file)
            await self._spool(failed)

    async def _publish(self, event: UsageEvent) -> None:
        """Publish a spooled event again, marked as such: its first publish may have been
        stored with its ack lost, and a replay can come after the stream's duplicate window,
        so metering checks it against what it stored."""
        await self.bus.publish_durable(
            USAGE_SUBJECT, _encoded(event), msg_id=_replay_id(event), timeout=2.0, replayed=True
        )

    async def _spool(self, events: list[UsageEvent]) -> None:
        lines = "".join(_encoded(e).decode() + "\n" for e in events)
        await asyncio.to_thread(_append, self.spool_file, lines)
        self._spool_pending = True

    async def _replay_loop(self) -> None:
        # Files left by earlier processes (a crash, a restart) are replayed too.
        self._spool_pending = bool(await asyncio.to_thread(_pending_files, self.spool_dir))
        while True:
            await asyncio.sleep(1.0)
            if not self._spool_pending or not self.bus.connected:
                continue
            try:
                await self._replay()
            except Exception as exc:
                log.warning("usage spool replay paused: %s", exc)

    async def _replay(self) -> None:
        for path in await asyncio.to_thread(_pending_files, self.spool_dir):
            claimed = path.with_suffix(f".replaying-{os.getpid()}")
            try:
                await asyncio.to_thread(path.rename, claimed)
            except FileNotFoundError:
                continue  # another worker claimed it
            text = await asyncio.to_thread(claimed.read_text)
            lines = [line for line in text.splitlines() if line.strip()]
            for i, line in enumerate(lines):
                try:
                    event = UsageEvent.model_validate_json(line)
                except ValueError:
                    log.error("dropping an unreadable spooled usage line")
                    continue
                try:
                    await self._publish(event)
                except Exception:
                    rest = "".join(x + "\n" for x in lines[i:])
                    await asyncio.to_thread(_prepend, path, rest)
                    await asyncio.to_thread(claimed.unlink)
                    raise
            await asyncio.to_thread(claimed.unlink)
            log.info("replayed %d spooled usage event(s) from %s", len(lines), path.name)
        self._spool_pending = bool(await asyncio.to_thread(_pending_files, self.spool_dir))


def _replay_id(event: UsageEvent) -> str:
    """A replayed event's Nats-Msg-Id: its id, and for a request's admission note a suffix, as
    the note and the event of one request share their id (the stream would drop the second)."""
    return event.event_id if event.phase == "final" else f"{event.event_id}.{event.phase}"


def _encoded(event: UsageEvent) -> bytes:
    """The event as a JSON line. Text that is not valid Unicode (a lone surrogate a client
    sent, in a user name or a model name) cannot be written as JSON: it is replaced by '?',
    and the event, its tokens and its cost, still counts."""
    try:
        return event.model_dump_json().encode()
    except ValueError:
        log.warning("usage event %s holds text that is not valid Unicode; stored with it replaced", event.event_id)
        return json.dumps(event.model_dump(mode="json"), ensure_ascii=False).encode("utf-8", "replace")


def _messages(lines: list[bytes]) -> list[tuple[int, int]]:
    """``(start, end)`` of the lines each message of a batch carries: all of them, unless they
    pass the message size."""
    spans, start, size = [], 0, 0
    for i, line in enumerate(lines):
        if i > start and size + len(line) + 1 > _MESSAGE_BYTES:
            spans.append((start, i))
            start, size = i, 0
        size += len(line) + 1
    spans.append((start, len(lines)))
    return spans


def _pending_files(spool_dir: Path) -> list[Path]:
    if not spool_dir.exists():
        return []
    # Also pick up claims of workers that died mid-replay.
    files = list(spool_dir.glob("usage-*.jsonl")) + list(spool_dir.glob("usage-*.replaying-*"))
    return sorted(files, key=lambda p: p.stat().st_mtime)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _prepend(path: Path, text: str) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + existing, encoding="utf-8")
    os.replace(tmp, path)
