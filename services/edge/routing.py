"""The route table, mirrored from the router's KV bucket, and model resolution."""

from __future__ import annotations

import logging

from shared.bus import Bus, KVMirror
from shared.catalog import Plan, RouteTable, published_table
from shared.errors import MODEL_NOT_FOUND, UNAVAILABLE, GatewayError
from shared.subjects import ROUTES_BUCKET, ROUTES_KEY

log = logging.getLogger("switchyard.edge.routing")


class Routes:
    def __init__(self, bus: Bus) -> None:
        self.table: RouteTable | None = None
        self.mirror = KVMirror(bus, ROUTES_BUCKET, self._load)

    def _load(self, entries: dict[str, bytes]) -> None:
        self.table = published_table(entries, ROUTES_KEY) or self.table

    def current(self) -> RouteTable:
        if self.table is None:
            raise GatewayError(UNAVAILABLE, "the gateway has no route table yet; is the router running?")
        return self.table

    def plan(self, model: str) -> Plan:
        plan = self.current().plan(model)
        if plan is None or not plan.targets:
            raise GatewayError(
                MODEL_NOT_FOUND,
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
            )
        return plan
