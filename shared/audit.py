"""Publishing audit events to JetStream, off the caller's path.

Each event is published with its id as ``Nats-Msg-Id`` from a background task; a publish that
fails is retried a few times, then logged (without the event's details beyond its action).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from shared.bus import Bus
from shared.events import AuditEvent
from shared.subjects import AUDIT_STREAM, AUDIT_SUBJECT

log = logging.getLogger("switchyard.audit")


class Auditor:
    def __init__(self, bus: Bus, instance: str) -> None:
        self.bus = bus
        self.instance = instance
        self._tasks: set[asyncio.Task[None]] = set()

    async def setup(self) -> None:
        await self.bus.ensure_stream(AUDIT_STREAM, [AUDIT_SUBJECT], work_queue=True)

    def record(
        self, *, actor: str, action: str, target: str = "", status: int = 200, source: str = "", actor_user: str = ""
    ) -> None:
        event = AuditEvent(
            event_id="aud_" + os.urandom(12).hex(),
            ts=time.time(),
            actor=actor,
            actor_user=actor_user,
            action=action,
            target=target,
            status=status,
            source=source,
            instance=self.instance,
        )
        task = asyncio.get_running_loop().create_task(self._publish(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: AuditEvent) -> None:
        payload = event.model_dump_json().encode()
        for attempt in range(5):
            try:
                await self.bus.publish_durable(AUDIT_SUBJECT, payload, msg_id=event.event_id)
                return
            except Exception as exc:
                if attempt == 4:
                    log.error("audit event %s (%s) could not be published: %s", event.event_id, event.action, exc)
                    return
                await asyncio.sleep(0.5 * 2**attempt)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
