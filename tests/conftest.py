"""Fixtures that start the real stack (nats-server, OpenBao, the four services) the way
``make up`` does, with an OpenAI-format provider simulator set by ``OPENAI_BASE_URL``."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from stack.launcher import Stack, StackInfo
from stack.settings import StackSettings
from tests.simulators import bedrock_sim
from tests.simulators.anthropic_sim import AnthropicSimulator
from tests.simulators.bedrock_sim import BedrockSimulator
from tests.simulators.cohere_sim import CohereSimulator
from tests.simulators.gemini_sim import GeminiSimulator
from tests.simulators.images import ImageServer
from tests.simulators.openai_sim import OpenAISimulator
from tests.simulators.server import ThreadedServer

PROVIDER_KEY = "sk-sim-provider-key-0123456789abcdef"


@dataclass
class Gateway:
    stack: Stack
    info: StackInfo
    sim: OpenAISimulator
    anthropic: AnthropicSimulator
    gemini: GeminiSimulator
    images: ImageServer
    bedrock: BedrockSimulator
    cohere: CohereSimulator
    _clients: dict[str, OpenAI] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return self.info.base_url.removesuffix("/v1")

    def client(self, key: str | None = None, **kwargs: Any) -> OpenAI:
        """One SDK client per key and options for the whole session (closed at its end)."""
        cache_key = repr((key, sorted(kwargs.items())))
        if cache_key not in self._clients:
            self._clients[cache_key] = OpenAI(
                base_url=self.info.base_url, api_key=key or self.info.admin_key, max_retries=0, **kwargs
            )
        return self._clients[cache_key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def admin(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.info.admin_key}"}
        return httpx.request(method, self.origin + path, headers=headers, timeout=30, **kwargs)

    def new_user_key(self, user: str) -> str:
        resp = self.admin("POST", "/ai/keys", json={"user": user, "name": "test"})
        assert resp.status_code == 201, resp.text
        key = str(resp.json()["key"])
        wait_until(lambda: self.admin("GET", "/v1/models", key=key).status_code == 200, what="key to reach the edge")
        return key

    def usage(self, user: str) -> dict[str, Any]:
        resp = self.admin("GET", "/ai/usage/summary", params={"period": "24h", "user": user})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def requests_metered(self, user: str) -> int:
        """How many requests of ``user`` are stored; -1 while metering does not answer."""
        resp = self.admin("GET", "/ai/usage/summary", params={"period": "24h", "user": user})
        return int(resp.json()["total_requests"]) if resp.status_code == 200 else -1


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Files under ``root`` holding ``needle``. A live data dir changes while it is walked
    (ClickHouse renames and removes its temporary parts and merge dirs): whatever vanishes
    mid-walk is skipped, as ``os.walk`` skips directories it cannot list."""
    found: list[Path] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def wait_until(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Simulators:
    openai: OpenAISimulator
    anthropic: AnthropicSimulator
    gemini: GeminiSimulator
    images: ImageServer
    bedrock: BedrockSimulator
    cohere: CohereSimulator

    def environ(self) -> dict[str, str]:
        return {
            "ANTHROPIC_BASE_URL": self.anthropic.base_url,
            "ANTHROPIC_API_KEY": PROVIDER_KEY,
            "GEMINI_BASE_URL": self.gemini.base_url,
            "GEMINI_API_KEY": PROVIDER_KEY,
            "VERTEX_BASE_URL": self.gemini.origin,  # Vertex AI's paths, served by the Gemini simulator
            # Bedrock with no provider key: the edges sign with the AWS credential chain (here
            # the environment's access key), as on an instance with a role.
            "BEDROCK_BASE_URL": self.bedrock.origin,
            "AWS_ACCESS_KEY_ID": bedrock_sim.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": bedrock_sim.SECRET_KEY,
            "COHERE_BASE_URL": self.cohere.origin,
            "COHERE_API_KEY": PROVIDER_KEY,
            # Azure OpenAI and Mistral speak OpenAI's wire format: the OpenAI simulator serves them.
            "AZURE_BASE_URL": self.openai.base_url.removesuffix("/v1"),
            "AZURE_API_KEY": PROVIDER_KEY,
            "MISTRAL_BASE_URL": self.openai.base_url,
            "MISTRAL_API_KEY": PROVIDER_KEY,
            "GATEWAY_OPENAI_COMPATIBLE": f"selfhosted=http://127.0.0.1:{self.openai.port}/selfhosted/v1",
            # The image server is on loopback: allow exactly it, so every other private
            # address (the redirect target included) is still refused.
            "GATEWAY_MEDIA_FETCH_ALLOW": f"127.0.0.1:{self.images.port}",
            "GATEWAY_MEDIA_FETCH_MAX_BYTES": str(1024 * 1024),
        }


def _unreachable_port() -> int:
    """A loopback port where nothing listens, held for the whole session (bound, never
    listening) so no server started later (a health port, an edge) can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return int(sock.getsockname()[1])


_HELD: list[socket.socket] = []


def stack_environ(sim: OpenAISimulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("GATEWAY_")}
    env.pop("VAULT_ADDR", None)
    env.pop("VAULT_TOKEN", None)
    env.update(
        {
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": PROVIDER_KEY,
            # A provider whose base URL leads nowhere: nothing listens on this loopback port.
            "GROQ_BASE_URL": f"http://127.0.0.1:{_unreachable_port()}/openai/v1",
            "GROQ_API_KEY": "gsk-sim-unreachable",
            "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "1.5",
            "GATEWAY_MAX_BODY_BYTES": str(1024 * 1024),
            # Short read deadlines, for the slow-client tests (every other client sends at once).
            "GATEWAY_HEADER_READ_TIMEOUT_SECONDS": "3",
            "GATEWAY_BODY_READ_TIMEOUT_SECONDS": "5",
            "GATEWAY_METERING_BATCH_WAIT_SECONDS": "0.2",
            # A metering process killed mid-batch leaves its batch unacknowledged: redeliver soon.
            "GATEWAY_METERING_ACK_WAIT_SECONDS": "3",
        }
    )
    env.update(extra)
    return env


def launch(settings: StackSettings, environ: dict[str, str]) -> Stack:
    """A started stack (or nothing left running if it failed to start)."""
    stack = Stack(settings, environ=environ)
    try:
        stack.start()
    except Exception:
        stack.stop()
        raise
    return stack


def start_stack(data_dir: Path, sim: OpenAISimulator, **extra: str) -> Stack:
    # NATS's monitoring endpoint is off by default; tests count the edges' messages there.
    settings = StackSettings(
        GATEWAY_DATA_DIR=data_dir, GATEWAY_PORT=0, GATEWAY_EDGE_WORKERS=1, GATEWAY_NATS_MONITOR_PORT=0
    )
    return launch(settings, stack_environ(sim, **extra))


@pytest.fixture(scope="session", autouse=True)
def _release_held_ports() -> Iterator[None]:
    yield
    while _HELD:
        _HELD.pop().close()


@pytest.fixture(scope="session")
def sim() -> Iterator[OpenAISimulator]:
    simulator = OpenAISimulator()
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="session")
def sims(sim: OpenAISimulator) -> Iterator[Simulators]:
    anthropic, gemini, images, bedrock = AnthropicSimulator(), GeminiSimulator(), ImageServer(), BedrockSimulator()
    cohere = CohereSimulator()
    started: list[ThreadedServer] = []
    try:
        for server in (anthropic, gemini, images, bedrock, cohere):
            server.start()
            started.append(server)
        images.private_target = f"http://127.0.0.1:{sim.port}/v1/models"  # loopback, not allowed
        yield Simulators(sim, anthropic, gemini, images, bedrock, cohere)
    finally:
        for server in started:
            server.stop()


def own_gateway(data_dir: Path, sims: Simulators, **extra: str) -> Iterator[Gateway]:
    """A whole stack in ``data_dir`` against the simulators (its environment changed by
    ``extra``), stopped when the caller is done."""
    stack = start_stack(data_dir, sims.openai, **(sims.environ() | extra))
    assert stack.info is not None
    gw = Gateway(stack, stack.info, sims.openai, sims.anthropic, sims.gemini, sims.images, sims.bedrock, sims.cohere)
    try:
        yield gw
    finally:
        gw.close()
        stack.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, sims: Simulators) -> Iterator[Gateway]:
    yield from own_gateway(tmp_path_factory.mktemp("gateway"), sims)
