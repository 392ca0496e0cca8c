"""The production shape on loopback: a 3-node NATS cluster (JetStream, replicas 3), one OpenBao,
node A running all four services and node B running edge, router and keyvault, every service
connected as its own NATS user.

While a client sends streaming and non-streaming chat requests to both nodes' edges (moving
to the other node when one refuses, as a load balancer does), the test SIGKILLs a NATS node
and restarts it, SIGKILLs metering (its supervisor restarts it), and SIGTERMs node B's edge
(it drains: streams in flight finish, new connections are refused) and starts it again.
Afterwards every request the client saw succeed is metered exactly once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from shared import identity, subjects
from shared.bus import Bus
from stack import nats_auth
from stack.launcher import Stack
from stack.settings import StackSettings
from tests.conftest import launch, stack_environ, wait_until
from tests.servers import NatsCluster, VaultServer
from tests.simulators.openai_sim import OpenAISimulator

THREADS = 4
STREAM_MODEL = "gpt-sim-long"  # 200 chunks, 20 ms apart: streams are in flight when a node stops
PLAIN_MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "hello cluster"}]


@dataclass
class Tally:
    attempts: int = 0
    succeeded: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    refused_in_drain: int = 0
    failures: list[str] = field(default_factory=list)
    streams_in_flight: dict[str, set[int]] = field(default_factory=lambda: {"A": set(), "B": set()})
    finished_streams: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Balancer:
    """What a load balancer does: round robin over the nodes it believes up; a node that
    refuses a request is taken out until it is ready again."""

    def __init__(self) -> None:
        self.up = ["A", "B"]
        self.draining: set[str] = set()
        self.lock = threading.Lock()

    def order(self, i: int) -> list[str]:
        with self.lock:
            nodes = list(self.up)
        return nodes[i % len(nodes) :] + nodes[: i % len(nodes)] if nodes else []

    def take_out(self, node: str) -> None:
        with self.lock:
            if node in self.up and len(self.up) > 1:
                self.up.remove(node)

    def put_back(self, node: str) -> None:
        with self.lock:
            if node not in self.up:
                self.up.append(node)
            self.draining.discard(node)


class Refused(Exception):
    """The node did not take the request (no response started)."""


def _one_request(client: OpenAI, node: str, stream: bool, seq: int, tally: Tally) -> tuple[int, int]:
    """One request; returns (prompt, completion) tokens as the client saw them. Raises
    Refused when no response started, any other exception when one broke."""
    try:
        if not stream:
            reply = client.chat.completions.create(model=PLAIN_MODEL, messages=MESSAGES)  # type: ignore[arg-type]
            assert reply.usage is not None and reply.choices[0].message.content
            return reply.usage.prompt_tokens, reply.usage.completion_tokens
        chunks = client.chat.completions.create(
            model=STREAM_MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    except openai.APIConnectionError as exc:
        raise Refused(f"connection: {exc}") from exc
    except openai.APIStatusError as exc:
        if exc.status_code == 503:
            raise Refused(f"503: {exc}") from exc
        raise
    with tally.lock:
        tally.streams_in_flight[node].add(seq)
    try:
        usage = None
        text = []
        finish = None
        for chunk in chunks:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        assert finish == "stop", f"stream ended without a finish reason ({len(text)} chunks)"
        assert usage is not None, "stream ended without usage"
        with tally.lock:
            tally.finished_streams.add(seq)
        return usage.prompt_tokens, usage.completion_tokens
    finally:
        with tally.lock:
            tally.streams_in_flight[node].discard(seq)


def _load(clients: dict[str, OpenAI], lb: Balancer, tally: Tally, stop: threading.Event, worker: int) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        seq = worker * 1_000_000 + i
        stream = i % 2 == 0
        for node in lb.order(i + worker):
            with tally.lock:
                tally.attempts += 1
            try:
                prompt, completion = _one_request(clients[node], node, stream, seq, tally)
            except Refused as exc:
                if node in lb.draining:
                    with tally.lock:
                        tally.refused_in_drain += 1
                    lb.take_out(node)
                    continue  # the balancer moves on to the next node
                with tally.lock:
                    tally.failures.append(f"node {node} refused outside a drain: {exc}")
                break
            except Exception as exc:
                with tally.lock:
                    tally.failures.append(f"node {node} {'stream' if stream else 'request'} failed: {exc!r}")
                break
            with tally.lock:
                tally.succeeded += 1
                tally.prompt_tokens += prompt
                tally.completion_tokens += completion
            break


def _ready(origin: str) -> bool:
    try:
        return httpx.get(origin + "/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[tuple[NatsCluster, VaultServer, dict[str, str]]]:
    passwords = {user: secrets.token_urlsafe(16) for user in (*nats_auth.SERVICES, nats_auth.ADMIN)}
    nats = NatsCluster(tmp_path / "nats", passwords)
    vault = VaultServer(tmp_path / "vault")
    try:
        nats.start()
        wait_until(lambda: all(nats.healthy(i) for i in range(3)), timeout=60, what="the NATS cluster")
        vault.start()
        yield nats, vault, passwords
    finally:
        vault.stop()
        nats.stop()


def _node(root: Path, nats: NatsCluster, vault: VaultServer, env: dict[str, str], services: str) -> Stack:
    settings = StackSettings(
        GATEWAY_DATA_DIR=root,
        GATEWAY_PORT=0,
        GATEWAY_EDGE_WORKERS=1,
        GATEWAY_SERVICES=services,
        GATEWAY_NATS_URL=nats.url,
        VAULT_ADDR=vault.addr,
        VAULT_TOKEN=vault.token,
        GATEWAY_ADMIN_KEY=env["GATEWAY_ADMIN_KEY"],
        GATEWAY_DRAIN_SECONDS=env["GATEWAY_DRAIN_SECONDS"],
    )
    return launch(settings, env)


def _replicas(nats: NatsCluster, admin_password: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        bus = Bus(nats_auth.with_user(nats.url, "admin", admin_password), "test-admin", replicas=1)
        await bus.connect(deadline=20)
        try:
            # A service started with fewer replicas configured never lowers what is there.
            await bus.ensure_stream(subjects.USAGE_STREAM, [subjects.USAGE_SUBJECTS], work_queue=True)
            await bus.ensure_kv(subjects.CLIENT_KEYS_BUCKET)
            names = [
                subjects.USAGE_STREAM,
                subjects.AUDIT_STREAM,
                subjects.USAGE_DLQ_STREAM,
                f"KV_{subjects.ROUTES_BUCKET}",
                f"KV_{subjects.CLIENT_KEYS_BUCKET}",
            ]
            return {name: int((await bus.js.stream_info(name)).config.num_replicas or 1) for name in names}
        finally:
            await bus.close()

    return asyncio.run(run())


# Seven services, three NATS nodes and OpenBao start and restart here: on a loaded 2-core
# machine that takes minutes, not the suite's default 300 s.
@pytest.mark.timeout(900)
def test_two_nodes_survive_nats_metering_and_edge_restarts_with_exact_metering(
    tmp_path: Path, sim: OpenAISimulator, cluster_env: tuple[NatsCluster, VaultServer, dict[str, str]]
) -> None:
    nats, vault, passwords = cluster_env
    env = {nats_auth.password_variable(user): pw for user, pw in passwords.items() if user != nats_auth.ADMIN}
    env |= {
        "GATEWAY_NATS_REPLICAS": "3",
        "GATEWAY_ADMIN_KEY": "sk-sy-admin-" + secrets.token_urlsafe(24),
        "GATEWAY_DRAIN_SECONDS": "30",
    }
    # One registry of edge identities for both nodes' keyvaults (a ConfigMap in production),
    # holding each node's edge identity: a fetch is answered by either node's keyvault.
    registry = tmp_path / "edge-identities"
    registry.mkdir()
    keys = {}
    for node in ("a", "b"):
        keys[node], public = identity.create(f"node-{node}", tmp_path / f"identity-{node}")
        (registry / public.name).write_bytes(public.read_bytes())
    env["GATEWAY_EDGE_IDENTITIES_DIR"] = str(registry)
    env = stack_environ(sim, **env)  # one configuration for both nodes, as in production
    env_a = env | {"GATEWAY_EDGE_IDENTITY_FILE": str(keys["a"])}
    node_a = _node(tmp_path / "a", nats, vault, env_a, "router,keyvault,metering,edge")
    node_b: Stack | None = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    clients: dict[str, OpenAI] = {}
    try:
        node_b = _node(
            tmp_path / "b", nats, vault, env | {"GATEWAY_EDGE_IDENTITY_FILE": str(keys["b"])}, "edge,router,keyvault"
        )
        assert set(node_b.supervisor.children) == {"edge", "router", "keyvault"}  # no NATS, Vault or metering
        assert node_a.info and node_b.info
        origin = {"A": node_a.info.health["edge"], "B": node_b.info.health["edge"]}
        admin = {"authorization": f"Bearer {env['GATEWAY_ADMIN_KEY']}"}

        user = f"cluster-{uuid.uuid4().hex[:8]}"
        created = httpx.post(origin["A"] + "/ai/keys", json={"user": user, "name": "load"}, headers=admin, timeout=30)
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        for node in ("A", "B"):  # the key is in force on both nodes
            resp = httpx.get(origin[node] + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10)
            assert resp.status_code == 200, resp.text
            clients[node] = OpenAI(base_url=origin[node] + "/v1", api_key=key, max_retries=0, timeout=60)

        tally = Tally()
        lb = Balancer()
        threads = [
            threading.Thread(target=_load, args=(clients, lb, tally, stop, w), daemon=True) for w in range(THREADS)
        ]
        for thread in threads:
            thread.start()

        def more_succeed(n: int, what: str) -> None:
            target = tally.succeeded + n
            wait_until(lambda: tally.succeeded >= target or bool(tally.failures), timeout=120, what=what)
            assert not tally.failures, tally.failures

        more_succeed(20, "traffic on both nodes")

        # 1. A NATS node dies and comes back.
        nats.kill(0)
        more_succeed(20, "traffic with a NATS node down")
        nats.start(0)
        wait_until(lambda: nats.healthy(0), timeout=60, what="the NATS node to rejoin")
        more_succeed(10, "traffic after the NATS node rejoined")

        # 2. Metering dies mid-batch; its supervisor starts it again.
        metering_pid = node_a.supervisor.pid("metering")
        assert metering_pid is not None
        os.kill(metering_pid, signal.SIGKILL)
        more_succeed(10, "traffic while metering is down")
        wait_until(
            lambda: (
                node_a.supervisor.pid("metering") not in (None, metering_pid) and _ready(node_a.info.health["metering"])
            ),  # type: ignore[union-attr]
            timeout=120,
            what="metering to be restarted",
        )

        # 3. Node B's edge drains: its streams in flight finish, then it starts again.
        wait_until(lambda: bool(tally.streams_in_flight["B"]), timeout=60, what="a stream in flight on node B")
        with tally.lock:
            in_flight_at_stop = set(tally.streams_in_flight["B"])
        lb.draining.add("B")
        started = time.monotonic()
        code = node_b.supervisor.stop("edge", signal.SIGTERM)
        drained_in = time.monotonic() - started
        assert code == 0, f"the draining edge exited with {code}"
        assert in_flight_at_stop <= tally.finished_streams, "a stream in flight on the draining edge did not finish"
        assert not _ready(origin["B"])
        node_b.supervisor.start("edge")
        wait_until(lambda: _ready(origin["B"]), timeout=120, what="node B's edge to be ready again")
        lb.put_back("B")
        more_succeed(10, "traffic after node B's edge came back")

        stop.set()
        for thread in threads:
            thread.join(timeout=90)
        assert not tally.failures, tally.failures

        # Every request the client saw succeed is metered exactly once.
        def summary() -> dict[str, int]:
            resp = httpx.get(
                origin["A"] + "/ai/usage/summary", params={"period": "24h", "user": user}, headers=admin, timeout=30
            )
            return dict(resp.json()) if resp.status_code == 200 else {"total_requests": -1}

        try:
            wait_until(lambda: summary()["total_requests"] >= tally.succeeded, timeout=120, what="usage to settle")
        finally:
            seen = summary()
            status = httpx.get(origin["A"] + "/ai/usage/status", headers=admin, timeout=30).text
            print(f"\nmetering status: {status}")
            print(
                f"\ncluster figures: attempts {tally.attempts}, succeeded {tally.succeeded}, "
                f"refused during drain {tally.refused_in_drain}, metered {seen.get('total_requests')}, "
                f"duplicates {max(int(seen.get('total_requests', 0)) - tally.succeeded, 0)}, "
                f"streams in flight at SIGTERM {len(in_flight_at_stop)} (drained in {drained_in:.1f}s), "
                f"tokens client {tally.prompt_tokens}+{tally.completion_tokens} "
                f"metered {seen.get('prompt_tokens')}+{seen.get('completion_tokens')}"
            )
        assert seen["total_requests"] == tally.succeeded
        assert seen["prompt_tokens"] == tally.prompt_tokens
        assert seen["completion_tokens"] == tally.completion_tokens
        assert seen["total_errors"] == 0

        # Every stream and bucket has 3 replicas, and a start with fewer configured keeps them.
        assert set(_replicas(nats, passwords[nats_auth.ADMIN]).values()) == {3}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
        for client in clients.values():
            client.close()
        if node_b is not None:
            node_b.stop()
        node_a.stop()
