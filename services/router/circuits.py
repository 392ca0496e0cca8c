"""Per-target circuit state, kept from the edges' health reports and published with the route
table, so every edge skips a target that is down.

A target opens after ``threshold`` failed attempts in a row (5xx, timeouts, connection errors:
the provider's failures, not a rate limit or a bad request), stays open ``open_seconds``, then
is half-open: edges send it traffic again after their closed targets, and the first report
with a success closes it while one with only failures opens it again. The measured time to
first token (a moving average) is what the ``fastest`` strategy orders by.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.catalog import Circuit, CircuitState
from shared.messages import HealthReport

log = logging.getLogger("switchyard.router.circuits")

_TTFT_WEIGHT = 0.3  # of a new measurement in the moving average
_TTFT_CHANGE = 0.2  # a relative change that is worth publishing ...
_TTFT_EVERY = 10.0  # ... at most this often per target (each publication is a table every edge reads)


@dataclass
class _Target:
    state: CircuitState = "closed"
    since: float = 0.0
    reason: str = ""
    failures: int = 0  # in a row
    ttft_ms: float | None = None
    published_ttft_ms: float | None = None
    ttft_published_at: float = float("-inf")


class Circuits:
    def __init__(self, threshold: int = 5, open_seconds: float = 30.0, edge_timeout: float = 5.0) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.edge_timeout = edge_timeout
        self._targets: dict[str, _Target] = {}
        self._edges: dict[str, float] = {}  # instance -> when its last report came

    def record(self, report: HealthReport, now: float) -> bool:
        """Take one edge's report; True if what edges should know changed."""
        if report.leaving:
            self._edges.pop(report.instance, None)
        else:
            self._edges[report.instance] = now
        changed = False
        for name, seen in report.targets.items():
            target = self._targets.setdefault(name, _Target(since=now))
            if seen.ttft_count:
                sample = seen.ttft_ms_sum / seen.ttft_count
                target.ttft_ms = (
                    sample if target.ttft_ms is None else (_TTFT_WEIGHT * sample + (1 - _TTFT_WEIGHT) * target.ttft_ms)
                )
                old = target.published_ttft_ms
                moved = old is None or abs(target.ttft_ms - old) > _TTFT_CHANGE * old
                if moved and now - target.ttft_published_at >= _TTFT_EVERY:
                    target.published_ttft_ms, target.ttft_published_at = target.ttft_ms, now
                    changed = True
            if seen.ok:
                target.failures = 0
                if target.state != "closed":
                    self._move(name, target, "closed", now, "")
                    changed = True
            elif seen.failed:
                target.failures += seen.failed
                target.reason = seen.last_failure
                if target.state == "half_open" or (target.state == "closed" and target.failures >= self.threshold):
                    self._move(name, target, "open", now, seen.last_failure)
                    changed = True
        return changed

    def tick(self, now: float) -> bool:
        """Open circuits whose time is up become half-open; edges gone quiet are forgotten."""
        changed = False
        for name, target in self._targets.items():
            if target.state == "open" and now - target.since >= self.open_seconds:
                self._move(name, target, "half_open", now, target.reason)
                changed = True
        for instance, seen in list(self._edges.items()):
            if now - seen > self.edge_timeout:
                del self._edges[instance]
        return changed

    def live_edges(self, now: float) -> set[str]:
        return {i for i, seen in self._edges.items() if now - seen <= self.edge_timeout}

    def snapshot(self) -> dict[str, Circuit]:
        return {
            name: Circuit(state=t.state, since=t.since, reason=t.reason, ttft_ms=t.published_ttft_ms)
            for name, t in sorted(self._targets.items())
        }

    def _move(self, name: str, target: _Target, state: CircuitState, now: float, reason: str) -> None:
        log.warning("target %s: circuit %s -> %s %s", name, target.state, state, f"({reason})" if reason else "")
        target.state, target.since, target.reason = state, now, reason
