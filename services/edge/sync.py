"""Read-your-writes for admin changes.

After an admin call changed provider keys, client keys, projects, users' limits, routes or
accounts, the edge that served it asks the router to confirm the change with every live edge
(those whose health reports it hears). Each edge answers once it applies the change: its copy of the bucket has
caught up, or it fetched the provider keys again. The admin call then answers as usual; if an
edge did not confirm within the router's bound, it answers ``202 Accepted`` with the
``x-switchyard-sync`` header naming the edges that did not (the change is saved either way).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Response
from pydantic import BaseModel

from shared import subjects
from shared.bus import Bus, KVMirror
from shared.errors import GatewayError
from shared.messages import SyncAck, SyncKind, SyncRequest, SyncResult

log = logging.getLogger("switchyard.edge.sync")

SYNC_HEADER = "x-switchyard-sync"
_APPLY_TIMEOUT = 2.5  # within the router's wait for the answers
_CHANGE_TIMEOUT = 15.0  # the owning service's answer to an admin change
T = TypeVar("T", bound=BaseModel)


class SyncResponder:
    """This edge's answers to the router's confirmation requests."""

    def __init__(
        self,
        bus: Bus,
        instance: str,
        mirrors: dict[str, KVMirror],
        refresh_keys: Callable[[], Awaitable[None]],
    ) -> None:
        self.bus = bus
        self.instance = instance
        self.mirrors = mirrors  # by the kind of change they carry
        self.refresh_keys = refresh_keys

    async def start(self) -> None:
        await self.bus.serve(subjects.EDGE_SYNC, None, SyncRequest, self.confirm)

    async def confirm(self, request: SyncRequest) -> SyncAck:
        try:
            if request.kind == "provider_keys":
                await self.refresh_keys()
                return SyncAck(instance=self.instance)
            ok = await self.mirrors[request.kind].caught_up(_APPLY_TIMEOUT)
            return SyncAck(instance=self.instance, ok=ok, detail="" if ok else "still catching up")
        except Exception as exc:
            log.warning("could not apply the latest %s change: %s", request.kind, exc)
            return SyncAck(instance=self.instance, ok=False, detail=str(exc)[:200])


async def change_everywhere(
    bus: Bus, response: Response, kind: SyncKind, subject: str, message: BaseModel, reply_type: type[T]
) -> T:
    """Make an admin change (a request to the service that owns it), then wait until every live
    edge applies it: the one way the admin API changes shared state."""
    reply = await bus.request(subject, message, reply_type, timeout=_CHANGE_TIMEOUT)
    await confirm_everywhere(bus, kind, response)
    return reply


async def confirm_everywhere(bus: Bus, kind: SyncKind, response: Response) -> None:
    """Wait until every live edge applies the change; say so in the answer if one did not."""
    try:
        result = await bus.request(subjects.ROUTER_SYNC, SyncRequest(kind=kind), SyncResult, timeout=10.0)
    except GatewayError as exc:
        response.status_code = 202
        response.headers[SYNC_HEADER] = f"unconfirmed; the router did not answer ({exc.message})"
        log.warning("%s change saved but not confirmed: %s", kind, exc.message)
        return
    total = len(result.confirmed) + len(result.missing)
    if result.missing:
        response.status_code = 202
        response.headers[SYNC_HEADER] = (
            f"incomplete {len(result.confirmed)}/{total}; not confirmed by: {', '.join(result.missing)}"
        )
        log.warning("%s change saved; edges %s did not confirm it", kind, ", ".join(result.missing))
    else:
        response.headers[SYNC_HEADER] = f"confirmed {total}/{total}"
