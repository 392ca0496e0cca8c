"""Chaos on one machine: two edges, two metering processes (one holds the embedded engine, one
waits as its standby), the embedded single NATS. Under streaming and non-streaming traffic
from the official SDK, nats-server is SIGKILLed (the supervisor restarts it), each metering in
turn is SIGKILLed and started again, and one edge is SIGKILLed with streams in flight and
started again. Afterwards the requests the clients saw, the raw events and every aggregate
agree exactly: one raw row per request, each answered request with the tokens its client was
told, each broken one billed at its reservation and flagged, and the rollup's counts, tokens
and cost equal to the raw rows' (the figures are printed)."""

from __future__ import annotations

import os
import secrets
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from stack import procs
from tests.conftest import Gateway, Simulators, own_gateway, wait_until

MESSAGES = [{"role": "user", "content": "count me"}]
LONG = "gpt-4o-long"  # a stream of 200 chunks, 20 ms apart
EDGE_B = "edge-chaos-b"
METERING_B = "metering-chaos-b"


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory, sims: Simulators) -> Iterator[Gateway]:
    """A stack of its own, tuned so that each recovery takes seconds: heartbeats every
    second (an edge that died is known in three), and a batch a dead metering held is
    redelivered after five."""
    yield from own_gateway(
        tmp_path_factory.mktemp("chaos"),
        sims,
        GATEWAY_HEARTBEAT_SECONDS="1",
        GATEWAY_ORPHAN_GRACE_SECONDS="2",
        GATEWAY_ORPHAN_SWEEP_SECONDS="1",
        GATEWAY_METERING_ACK_WAIT_SECONDS="5",
    )


@dataclass
class Seen:
    """What the clients saw: each request by its tag (its ``user`` field)."""

    answered: dict[str, tuple[int, int]] = field(default_factory=dict)  # tag: (prompt, completion)
    broken: set[str] = field(default_factory=set)  # sent, and the connection broke mid-answer
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ask(client: openai.OpenAI, tag: str, model: str, stream: bool, seen: Seen) -> None:
    try:
        if stream:
            chunks = client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, user=tag
            )
            usage = None
            for chunk in chunks:
                usage = chunk.usage or usage
            assert usage is not None, "a stream that ended without its usage"
        else:
            usage = client.chat.completions.create(model=model, messages=MESSAGES, user=tag).usage
            assert usage is not None
    except openai.APIConnectionError:
        with seen.lock:
            seen.broken.add(tag)
        return
    with seen.lock:
        seen.answered[tag] = (usage.prompt_tokens, usage.completion_tokens)


class Traffic:
    """Four threads sending requests (half of them streams) round the edges that are up,
    until stopped; ``wait_for(n)`` returns once ``n`` more have been answered."""

    def __init__(self, clients: dict[str, openai.OpenAI], seen: Seen) -> None:
        self.clients, self.seen = clients, seen
        self.up = set(clients)
        self.busy: dict[str, int] = dict.fromkeys(clients, 0)
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(4)]
        self.n = 0

    def _run(self, worker: int) -> None:
        k = 0
        while not self.stop.is_set():
            with self.cond:
                edges = sorted(self.up)
                edge = edges[k % len(edges)]
                self.busy[edge] += 1
            k += 1
            try:
                _ask(self.clients[edge], f"t{worker}-{k}-{secrets.token_hex(2)}", "gpt-4o", k % 2 == 0, self.seen)
            finally:
                with self.cond:
                    self.busy[edge] -= 1
                    self.n += 1
                    self.cond.notify_all()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def wait_for(self, more: int) -> None:
        with self.cond:
            target = self.n + more
            assert self.cond.wait_for(lambda: self.n >= target, timeout=120), "traffic stalled"

    def take_out(self, edge: str) -> None:
        """No new requests to ``edge``; returns once none of the traffic's is in flight there."""
        with self.cond:
            self.up.discard(edge)
            assert self.cond.wait_for(lambda: self.busy[edge] == 0, timeout=60)

    def put_back(self, edge: str) -> None:
        with self.cond:
            self.up.add(edge)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


def _ready(origin: str) -> tuple[int, dict[str, Any]]:
    try:
        resp = httpx.get(origin + "/readyz", timeout=5)
        return resp.status_code, resp.json()
    except (httpx.HTTPError, ValueError):
        return -1, {}


def _raw(gateway: Gateway, user: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"user": user, "period": "24h", "limit": 1000}
        if cursor:
            params["before"] = cursor
        page = gateway.admin("GET", "/ai/usage/requests", params=params).json()
        rows += page["data"]
        if not page["has_more"]:
            return rows
        cursor = page["next_cursor"]


def _status(gateway: Gateway) -> dict[str, Any]:
    resp = gateway.admin("GET", "/ai/usage/status")
    return dict(resp.json()) if resp.status_code == 200 else {}


def test_nothing_is_lost_or_doubled_when_nats_each_metering_and_an_edge_are_killed(chaos: Gateway) -> None:
    gateway = chaos
    assert gateway.stack.info is not None
    metering_a = gateway.stack.info.health["metering"]
    metering_b = gateway.stack.add_replica("metering", METERING_B, {})
    edge_b = gateway.stack.add_edge(EDGE_B)
    wait_until(lambda: _ready(metering_b)[1].get("status") == "standby", what="the second metering to wait")
    user = "chaos-" + secrets.token_hex(3)
    key = gateway.new_user_key(user)
    wait_until(
        lambda: httpx.get(edge_b + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200,
        what="the key to reach edge B",
    )
    clients = {
        edge: openai.OpenAI(base_url=edge + "/v1", api_key=key, max_retries=0, timeout=60)
        for edge in (gateway.origin, edge_b)
    }
    seen = Seen()
    traffic = Traffic(clients, seen)
    traffic.start()
    try:
        traffic.wait_for(40)

        # nats-server SIGKILLed; the supervisor restarts it. Events meanwhile go to the spools.
        nats_pid = gateway.stack.supervisor.pid("nats")
        assert nats_pid is not None
        os.kill(nats_pid, signal.SIGKILL)
        wait_until(lambda: gateway.stack.supervisor.pid("nats") not in (None, nats_pid), what="NATS to restart")
        traffic.wait_for(60)

        # The metering holding the engine, then the one that took over, each SIGKILLed.
        gateway.stack.supervisor.stop("metering", signal.SIGKILL)
        wait_until(lambda: _ready(metering_b)[0] == 200, timeout=60, what="the standby to take over")
        gateway.stack.supervisor.start("metering")
        traffic.wait_for(60)
        gateway.stack.supervisor.stop(METERING_B, signal.SIGKILL)
        wait_until(lambda: _ready(metering_a)[0] == 200, timeout=60, what="the first metering to take over")
        gateway.stack.supervisor.start(METERING_B)
        traffic.wait_for(60)

        # Edge B SIGKILLed (its worker and itself) with four streams in flight on it.
        traffic.take_out(edge_b)
        streams = [
            threading.Thread(target=_ask, args=(clients[edge_b], f"long-{i}", LONG, True, seen)) for i in range(4)
        ]
        sent = len(gateway.sim.state.streams)
        for thread in streams:
            thread.start()
        wait_until(
            lambda: sum(1 for s in gateway.sim.state.streams[sent:] if s.model == LONG and s.chunks_sent > 0) >= 4,
            what="four streams under way on edge B",
        )
        parent = gateway.stack.supervisor.pid(EDGE_B)
        assert parent is not None
        for worker in procs.children(parent):
            os.kill(worker, signal.SIGKILL)
        gateway.stack.supervisor.stop(EDGE_B, signal.SIGKILL)
        for thread in streams:
            thread.join(timeout=60)
        assert {f"long-{i}" for i in range(4)} <= seen.broken
        gateway.stack.supervisor.start(EDGE_B)
        wait_until(lambda: _ready(edge_b)[0] == 200, timeout=60, what="edge B to be back")
        traffic.put_back(edge_b)
        traffic.wait_for(60)
    finally:
        traffic.finish()
        for client in clients.values():
            client.close()

    # Settled: every event stored, nothing left to deliver, the four broken requests billed.
    def settled() -> bool:
        status = _status(gateway)
        if status.get("usage_stream_messages") != 0 or status.get("pending") != 0:
            return False
        rows = _raw(gateway, user)
        return len(rows) == len(seen.answered) + len(seen.broken)

    try:
        wait_until(settled, timeout=180, what="every request the clients saw to be stored")
    finally:
        rows = _raw(gateway, user)
        tags = {r["request_user"] for r in rows}
        missing = (set(seen.answered) | seen.broken) - tags
        print(f"\nstored {len(rows)}, seen {len(seen.answered)} + {len(seen.broken)}; status {_status(gateway)}")
        print(f"missing {sorted(missing)[:20]} (broken among them: {sorted(missing & seen.broken)})")
    by_tag = {r["request_user"]: r for r in rows}
    assert len(by_tag) == len(rows) == len({r["id"] for r in rows}), "a request stored twice"
    assert set(by_tag) == set(seen.answered) | seen.broken
    for tag, (prompt, completion) in seen.answered.items():
        row = by_tag[tag]
        assert (row["status"], row["prompt_tokens"], row["completion_tokens"]) == (200, prompt, completion), tag
    for tag in seen.broken:
        row = by_tag[tag]
        assert row["error_type"] == "edge_lost" and row["usage_estimated"] and row["completion_tokens"] > 0, row

    raw = {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r["status"] >= 400),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "cost_usd": sum(r["cost_usd"] for r in rows),
    }
    summary = gateway.usage(user)
    rollup = {
        "requests": summary["total_requests"],
        "errors": summary["total_errors"],
        "prompt_tokens": summary["prompt_tokens"],
        "completion_tokens": summary["completion_tokens"],
        "cost_usd": summary["total_cost_usd"],
    }
    series = gateway.admin(
        "GET", "/ai/usage/timeseries", params={"user": user, "period": "24h", "granularity": "hour"}
    ).json()["data"]
    hourly = {
        "requests": sum(p["requests"] for p in series),
        "prompt_tokens": sum(p["prompt_tokens"] for p in series),
        "completion_tokens": sum(p["completion_tokens"] for p in series),
    }
    clients_saw = {
        "answered": len(seen.answered),
        "broken": len(seen.broken),
        "prompt_tokens": sum(p for p, _ in seen.answered.values()),
        "completion_tokens": sum(c for _, c in seen.answered.values()),
    }
    print(
        f"\nchaos: clients saw {clients_saw}\n       raw events {raw}\n       rollup {rollup}\n       hourly {hourly}"
    )
    assert rollup["requests"] == raw["requests"] == clients_saw["answered"] + clients_saw["broken"]
    assert rollup["errors"] == raw["errors"] == clients_saw["broken"]
    assert (rollup["prompt_tokens"], rollup["completion_tokens"]) == (raw["prompt_tokens"], raw["completion_tokens"])
    assert abs(rollup["cost_usd"] - raw["cost_usd"]) < 1e-9
    assert hourly == {k: raw[k] for k in hourly}
    answered = [by_tag[t] for t in seen.answered]
    assert sum(r["prompt_tokens"] for r in answered) == clients_saw["prompt_tokens"]
    assert sum(r["completion_tokens"] for r in answered) == clients_saw["completion_tokens"]
