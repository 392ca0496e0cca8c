"""Serving a request from its plan: the order of the targets, retries with backoff, and
fallbacks, all before the first byte reaches the client.

A target that fails with a cause the plan's retry policy lists (429, 5xx, a timeout, a
connection error) is tried again after a backoff that honours ``retry-after``, then the next
target is tried. A target with no usable provider key is skipped at once. An error that is the
request's own (400, 404, 422 from the provider, a parameter the provider cannot honour) is
the same everywhere and is answered as it is. Once a stream's first event is in hand the
attempt has succeeded: what happens later is the stream's (an error event, never a retry).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from services.edge.health import HealthReporter
from shared.catalog import Plan, Route, RouteTable
from shared.errors import INTERNAL, GatewayError

T = TypeVar("T")

log = logging.getLogger("switchyard.edge.failover")

# Failures that say a target is down (they count toward its circuit); a 429 is a key's or an
# account's limit, not an outage.
OUTAGE = re.compile(r"^(5\d\d|timeout|connect)$")


class Observer(Protocol):
    """Told of each attempt as it starts and ends (the request's record, metrics, trace)."""

    def attempting(self, route: Route) -> None: ...
    def attempted(self, route: Route, error: GatewayError | None, cause: str | None) -> None: ...


def cause_of(exc: GatewayError) -> str | None:
    """Why an attempt failed, as a retry policy names it; None for the request's own errors."""
    if exc.cause:
        return exc.cause
    status = exc.upstream_status
    if status is None:
        return None  # our own refusal (an unsupported parameter, a body we cannot translate)
    if status == 429:
        return "429"
    if status in (401, 403):
        return "keys"  # every key the provider refused: another target may have good ones
    if status >= 500:
        return str(status)
    return None


def order(
    plan: Plan,
    table: RouteTable,
    rng: random.Random | None = None,
    probe: Callable[[str], bool] | None = None,
) -> list[Route]:
    """The targets in the order to try them: by strategy, then without open circuits (unless
    every target is open: then all are tried, as a last resort). A half-open target goes
    after the closed ones, or first when ``probe`` grants it this request as its probe."""
    targets = list(plan.targets)
    if len(targets) < 2:
        return targets
    if plan.strategy == "weighted":
        first = (rng or random).choices(range(len(targets)), weights=plan.weights)[0]
        targets.insert(0, targets.pop(first))
    elif plan.strategy == "cheapest":
        priced = {t.target: table.blended_price(t) for t in targets}
        targets.sort(key=lambda t: (priced[t.target] is None, priced[t.target] or 0.0))
    elif plan.strategy == "fastest":

        def ttft(route: Route) -> tuple[bool, float]:
            circuit = table.circuits.get(route.target)
            measured = circuit.ttft_ms if circuit is not None else None
            return (measured is not None, measured or 0.0)  # unmeasured first: measure them

        targets.sort(key=ttft)
    closed = [t for t in targets if _state(table, t) == "closed"]
    half_open = [t for t in targets if _state(table, t) == "half_open"]
    probing = [t for t in half_open if probe is not None and probe(t.target)]
    return probing + closed + [t for t in half_open if t not in probing] or targets


def _state(table: RouteTable, route: Route) -> str:
    circuit = table.circuits.get(route.target)
    return circuit.state if circuit is not None else "closed"


def backoff(plan: Plan, tries: int, retry_after: str | None) -> float | None:
    """How long to wait before trying a target again; None when the provider asks for longer
    than the policy waits (then the next target is better)."""
    wait = plan.retry.backoff_seconds * (2**tries) * random.uniform(0.8, 1.2)
    if retry_after:
        try:
            asked = float(retry_after)
        except ValueError:
            asked = None
        if asked is not None:
            wait = max(asked, 1.0)  # a key cools down at least a second after a 429
    return wait if wait <= plan.retry.max_wait_seconds else None


async def _bug_is_internal(work: Awaitable[T], route: Route) -> T:
    """An attempt whose failure is not a GatewayError failed in the gateway's own code (a
    provider's reply of another shape is a GatewayError at its boundary): a 500, logged with
    the request id, never retried and never blamed on the provider."""
    try:
        return await work
    except GatewayError:
        raise
    except Exception as exc:
        log.exception("internal error while calling %s", route.target)
        raise GatewayError(INTERNAL, "The gateway hit an internal error; it has been logged.") from exc


async def serve(
    plan: Plan,
    table: RouteTable,
    health: HealthReporter,
    attempt: Callable[[Route], Awaitable[T]],
    observer: Observer,
) -> T:
    """Run ``attempt`` on the plan's targets until one succeeds; raise the last failure."""
    failures: list[str] = []
    last: GatewayError | None = None
    targets = order(plan, table, probe=health.may_probe)
    for route in targets:
        for tries in range(plan.retry.attempts):
            observer.attempting(route)
            started = time.perf_counter()
            try:
                result = await _bug_is_internal(attempt(route), route)
            except GatewayError as exc:
                cause = cause_of(exc)
                observer.attempted(route, exc, cause)
                if cause is not None and OUTAGE.match(cause):
                    health.failed(route.target, f"{cause}: {exc.message[:160]}")
                if cause is None or (cause != "keys" and not plan.retry.covers(cause)):
                    raise
                last = exc
                failures.append(f"{route.target}: {exc.message}")
                if cause == "keys" or tries + 1 >= plan.retry.attempts:
                    break
                wait = backoff(plan, tries, exc.headers.get("retry-after"))
                if wait is None:
                    break
                await asyncio.sleep(wait)
            else:
                health.succeeded(route.target, (time.perf_counter() - started) * 1000)
                observer.attempted(route, None, None)
                return result
    assert last is not None
    if len(targets) > 1:
        summary = GatewayError(
            last.kind,
            f"Every target of `{plan.model}` failed: " + "; ".join(failures),
            status=last.status,
            headers=last.headers,
        )
        summary.upstream_status, summary.cause = last.upstream_status, last.cause
        raise summary from last
    raise last
