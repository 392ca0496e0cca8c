"""What this edge heard of every service process (their heartbeats, shared/heartbeat.py), for
``GET /ai/status``. The edge beats too, so every edge worker is listed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import BaseModel

from shared import subjects
from shared.bus import Bus, Msg
from shared.heartbeat import Heartbeat
from shared.messages import Empty, ServiceBeat

# An instance not heard for this many intervals is shown as stale; after FORGET_SECONDS it is
# dropped from the list (a process that stopped for good).
STALE_AFTER = 3
FORGET_SECONDS = 600.0


class InstanceStatus(BaseModel):
    service: str
    instance: str
    version: str
    host: str
    pid: int
    started_at: float
    uptime_seconds: float
    last_heartbeat: float
    seconds_since_heartbeat: float
    ready: bool
    state: str  # "up" or "stale"


class StatusReport(BaseModel):
    now: float
    heartbeat_seconds: float
    instances: list[InstanceStatus]


@dataclass
class _Heard:
    beat: ServiceBeat
    at: float


class StatusBoard(Heartbeat):
    def __init__(self, bus: Bus, service: str, instance: str, interval: float) -> None:
        super().__init__(bus, service, instance, interval)
        self.heard: dict[str, _Heard] = {}

    async def start(self) -> None:
        await super().start()
        await self.bus.subscribe(f"{subjects.STATUS_HEARTBEAT}.>", self._on_beat)
        await self.bus.publish(subjects.STATUS_ANNOUNCE, Empty())  # everyone: say so now

    async def _on_beat(self, msg: Msg) -> None:
        try:
            beat = ServiceBeat.model_validate_json(msg.data)
        except ValueError:
            return
        self.heard[beat.instance] = _Heard(beat, time.time())

    def report(self) -> StatusReport:
        now = time.time()
        out = []
        for key, heard in list(self.heard.items()):
            age = now - heard.at
            if age > FORGET_SECONDS:
                del self.heard[key]
                continue
            beat = heard.beat
            out.append(
                InstanceStatus(
                    service=beat.service,
                    instance=beat.instance,
                    version=beat.version,
                    host=beat.host,
                    pid=beat.pid,
                    started_at=beat.started_at,
                    uptime_seconds=round(now - beat.started_at, 3),
                    last_heartbeat=heard.at,
                    seconds_since_heartbeat=round(age, 3),
                    ready=beat.ready,
                    state="stale" if age > STALE_AFTER * self.interval else "up",
                )
            )
        out.sort(key=lambda s: (s.service, s.instance))
        return StatusReport(now=now, heartbeat_seconds=self.interval, instances=out)
