"""The order targets are tried in, which failures are retried or fall back, and the circuit
state the router keeps from the edges' reports."""

from __future__ import annotations

import asyncio
import random

import pytest

from services.edge import failover
from services.edge.health import HealthReporter
from services.router.circuits import Circuits
from services.router.compile import compile_routes
from shared.catalog import Circuit, Plan, Route, RouteTable, load_catalog
from shared.errors import INVALID_REQUEST, RATE_LIMITED, UPSTREAM, GatewayError
from shared.gateway_config import GatewayConfig
from shared.messages import HealthReport, TargetOutcomes

TARGETS = ["anthropic/claude-sonnet-4-6", "openai/gpt-4o", "openai/gpt-4o-mini"]


def _table(strategy: str, **extra: object) -> RouteTable:
    config = GatewayConfig.model_validate({"models": {"m": {"targets": TARGETS, "strategy": strategy, **extra}}})
    return compile_routes(load_catalog(), {}, config=config)


def _plan(table: RouteTable) -> Plan:
    plan = table.plan("m")
    assert plan is not None
    return plan


def _names(routes: list[Route]) -> list[str]:
    return [r.target for r in routes]


def test_fallback_keeps_the_declared_order() -> None:
    table = _table("fallback")
    assert _names(failover.order(_plan(table), table)) == TARGETS


def test_cheapest_orders_by_catalog_price() -> None:
    table = _table("cheapest")
    # gpt-4o-mini (0.15/0.60) < gpt-4o (2.50/10) < claude-sonnet-4-6 (3/15)
    assert _names(failover.order(_plan(table), table)) == [TARGETS[2], TARGETS[1], TARGETS[0]]


def test_fastest_orders_by_measured_time_to_first_token_unmeasured_first() -> None:
    table = _table("fastest")
    table.circuits = {TARGETS[0]: Circuit(ttft_ms=900.0), TARGETS[1]: Circuit(ttft_ms=120.0)}
    assert _names(failover.order(_plan(table), table)) == [TARGETS[2], TARGETS[1], TARGETS[0]]


def test_weighted_picks_the_first_target_by_weight() -> None:
    table = _table("weighted", weights=[0, 1, 3])
    rng = random.Random(7)
    firsts = [failover.order(_plan(table), table, rng)[0].target for _ in range(400)]
    assert TARGETS[0] not in firsts  # weight 0
    assert 230 < firsts.count(TARGETS[2]) < 370  # about three quarters


def test_open_circuits_are_skipped_and_half_open_ones_go_last() -> None:
    table = _table("fallback")
    table.circuits = {TARGETS[0]: Circuit(state="open"), TARGETS[1]: Circuit(state="half_open")}
    assert _names(failover.order(_plan(table), table)) == [TARGETS[2], TARGETS[1]]
    table.circuits = {t: Circuit(state="open") for t in TARGETS}
    assert _names(failover.order(_plan(table), table)) == TARGETS  # all down: try them anyway


def _upstream(status: int, retry_after: str | None = None) -> GatewayError:
    err = GatewayError(UPSTREAM, f"HTTP {status}", headers={"retry-after": retry_after} if retry_after else None)
    err.upstream_status = status
    return err


@pytest.mark.parametrize(
    ("status", "cause"), [(429, "429"), (503, "503"), (529, "529"), (401, "keys"), (400, None), (404, None)]
)
def test_causes(status: int, cause: str | None) -> None:
    assert failover.cause_of(_upstream(status)) == cause
    assert failover.cause_of(GatewayError(INVALID_REQUEST, "ours")) is None


class _Bus:
    async def publish(self, subject: str, message: object) -> None:
        self.last = message


class _Tried:
    """The attempts failover.serve reports: each target as it is tried, and how it ended."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.ended: list[tuple[str, str | None]] = []

    def attempting(self, route: Route) -> None:
        self.targets.append(route.target)

    def attempted(self, route: Route, error: GatewayError | None, cause: str | None) -> None:
        self.ended.append((route.target, cause if error is not None else None))


def _serve(table: RouteTable, outcomes: dict[str, list[object]]) -> tuple[object, list[str]]:
    """Run failover.serve where each target answers from its list of outcomes in turn."""
    tried = _Tried()
    health = HealthReporter(_Bus(), "edge-test", 1.0)  # type: ignore[arg-type]

    async def attempt(route: Route) -> str:
        outcome = outcomes[route.target].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return str(outcome)

    async def run() -> object:
        try:
            return await failover.serve(_plan(table), table, health, attempt, tried)
        except GatewayError as exc:
            return exc

    result = asyncio.run(run())
    # Every attempt that started was reported as ended, in the same order.
    assert [target for target, _ in tried.ended] == tried.targets
    return result, tried.targets


def test_a_listed_failure_is_retried_then_the_next_target_answers() -> None:
    table = _table("fallback", retry={"attempts": 2, "backoff_seconds": 0})
    result, tried = _serve(table, {TARGETS[0]: [_upstream(503), _upstream(500)], TARGETS[1]: ["ok"]})
    assert result == "ok" and tried == [TARGETS[0], TARGETS[0], TARGETS[1]]


def test_the_requests_own_error_is_not_retried_anywhere() -> None:
    table = _table("fallback", retry={"attempts": 3, "backoff_seconds": 0})
    result, tried = _serve(table, {TARGETS[0]: [_upstream(400)], TARGETS[1]: ["ok"]})
    assert isinstance(result, GatewayError) and result.upstream_status == 400 and tried == [TARGETS[0]]


def test_a_target_without_usable_keys_is_skipped_at_once() -> None:
    table = _table("fallback", retry={"attempts": 3, "backoff_seconds": 0})
    cooling = GatewayError(RATE_LIMITED, "every key is cooling down")
    cooling.cause = "keys"
    result, tried = _serve(table, {TARGETS[0]: [cooling], TARGETS[1]: ["ok"]})
    assert result == "ok" and tried == [TARGETS[0], TARGETS[1]]


def test_an_unlisted_cause_ends_the_request() -> None:
    table = _table("fallback", retry={"attempts": 2, "on": ["429"]})
    result, tried = _serve(table, {TARGETS[0]: [_upstream(503)], TARGETS[1]: ["ok"]})
    assert isinstance(result, GatewayError) and tried == [TARGETS[0]]


def test_every_target_failing_names_each_failure() -> None:
    table = _table("fallback", retry={"attempts": 1})
    result, _ = _serve(table, {t: [_upstream(503)] for t in TARGETS})
    assert isinstance(result, GatewayError) and result.status == 502
    assert all(t in result.message for t in TARGETS)


def test_a_retry_after_longer_than_the_policy_waits_moves_on() -> None:
    table = _table("fallback", retry={"attempts": 3, "max_wait_seconds": 2})
    assert failover.backoff(_plan(table), 0, "30") is None
    assert failover.backoff(_plan(table), 0, "1") == 1.0
    assert failover.backoff(_plan(table), 0, "0.2") == 1.0  # a cooled key waits a second at least


def _report(target: str, ok: int = 0, failed: int = 0, ttft: float = 0.0) -> HealthReport:
    seen = TargetOutcomes(ok=ok, failed=failed, last_failure="503: down", ttft_ms_sum=ttft * ok, ttft_count=ok)
    return HealthReport(instance="edge-a", targets={target: seen})


def test_a_circuit_opens_after_repeated_failures_then_half_opens_and_closes() -> None:
    circuits = Circuits(threshold=3, open_seconds=30)
    assert not circuits.record(_report("t", failed=2), 100.0)
    assert circuits.record(_report("t", failed=1), 101.0)
    assert circuits.snapshot()["t"].state == "open" and circuits.snapshot()["t"].reason == "503: down"
    assert not circuits.tick(120.0) and circuits.tick(131.0)
    assert circuits.snapshot()["t"].state == "half_open"
    assert circuits.record(_report("t", failed=1), 132.0)  # a failed probe opens it again
    assert circuits.snapshot()["t"].state == "open"
    circuits.tick(170.0)
    assert circuits.record(_report("t", ok=1, ttft=50.0), 171.0)
    assert circuits.snapshot()["t"].state == "closed" and circuits.snapshot()["t"].ttft_ms == 50.0


def test_edges_are_live_while_they_report() -> None:
    circuits = Circuits(edge_timeout=5.0)
    circuits.record(HealthReport(instance="edge-a"), 100.0)
    circuits.record(HealthReport(instance="edge-b"), 103.0)
    assert circuits.live_edges(104.0) == {"edge-a", "edge-b"}
    circuits.tick(107.0)
    assert circuits.live_edges(107.0) == {"edge-b"}


def test_a_bug_in_the_gateway_is_a_500_never_retried_nor_blamed_on_the_provider(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = _table("fallback", retry={"attempts": 3, "backoff_seconds": 0})
    with caplog.at_level("ERROR", logger="switchyard.edge.failover"):
        result, tried = _serve(table, {TARGETS[0]: [KeyError("a bug of ours")], TARGETS[1]: ["ok"]})
    assert isinstance(result, GatewayError) and result.status == 500 and result.code == "internal_error"
    assert result.upstream_status is None and "provider" not in result.message
    assert tried == [TARGETS[0]]  # another target would not fix our own code
    assert "KeyError: 'a bug of ours'" in caplog.text  # logged with its traceback
