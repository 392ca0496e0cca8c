"""Servers the tests start by themselves, with the project's own launch helpers."""

from __future__ import annotations

import asyncio
import http.server
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.keyvault.app import Keyvault
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.vault import Vault
from shared.bus import Bus, Msg
from stack import nats_auth
from stack.nats import config_argv, nats_argv, write_config
from stack.openbao import EmbeddedVault, bao_argv
from stack.openbao import write_config as write_vault_config
from stack.ports import free_port, wait_port


class NatsServer:
    """One server without authentication (tests of the bus code alone)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return nats_argv(self.data_dir, self.port)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_port("127.0.0.1", self.port, 10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class ConfiguredNats(NatsServer):
    """One server run from configuration the test writes (TLS, operator mode, ...)."""

    def __init__(self, data_dir: Path, settings: str) -> None:
        super().__init__(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config = data_dir / "nats.conf"
        self.config.write_text(f'host: "127.0.0.1"\nport: {self.port}\n{settings}')

    def argv(self) -> list[str]:
        return config_argv(self.config)


async def round_trip(bus: Bus, subject: str, payload: bytes) -> bytes:
    """Publish ``payload`` and return what a subscription of the same connection received."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await got.put(msg.data)

    await bus.subscribe(subject, on_msg)
    await bus.nc.publish(subject, payload)
    return await asyncio.wait_for(got.get(), timeout=5)


class AuthNatsServer(NatsServer):
    """One server configured as ``make up`` configures its embedded NATS: the per-service
    users and permissions of ``stack.nats_auth``."""

    def __init__(self, data_dir: Path, passwords: dict[str, str]) -> None:
        super().__init__(data_dir)
        self.passwords = passwords
        self.config = write_config(
            data_dir / "nats.conf",
            name="auth-test",
            port=self.port,
            store_dir=data_dir / "jetstream",
            authorization=nats_auth.authorization(passwords),
        )

    def url_for(self, user: str) -> str:
        return nats_auth.with_user(self.url, user, self.passwords[user])

    def argv(self) -> list[str]:
        return config_argv(self.config)


class NatsCluster:
    """A NATS cluster on loopback: ``size`` nodes with JetStream, routes between them, and the
    per-service users of ``stack.nats_auth``."""

    def __init__(self, root: Path, passwords: dict[str, str], size: int = 3) -> None:
        self.root = root
        self.passwords = passwords
        self.ports = [free_port() for _ in range(size)]
        self.monitors = [free_port() for _ in range(size)]
        self.routes = [free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.configs = [
            write_config(
                root / f"n{i}" / "nats.conf",
                name=f"n{i}",
                port=self.ports[i],
                store_dir=root / f"n{i}" / "jetstream",
                authorization=nats_auth.authorization(passwords),
                monitor_port=self.monitors[i],
                cluster_port=self.routes[i],
                routes=[p for j, p in enumerate(self.routes) if j != i],
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def start(self, i: int | None = None) -> None:
        for n in range(len(self.ports)) if i is None else [i]:
            log = (self.root / f"n{n}" / "nats.log").open("ab")
            self.procs[n] = subprocess.Popen(config_argv(self.configs[n]), stdout=log, stderr=subprocess.STDOUT)
            log.close()
        for n in range(len(self.ports)) if i is None else [i]:
            assert wait_port("127.0.0.1", self.ports[n], 20)

    def healthy(self, i: int) -> bool:
        """The node serves and its JetStream is current (meta leader known, streams caught up)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.monitors[i]}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.procs[i] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=15)
                self.procs[i] = None


class VaultServer:
    """OpenBao on loopback, initialised and unsealed as the launcher does."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.config = write_vault_config(data_dir, self.port, free_port())
        self.vault = EmbeddedVault(data_dir, self.port)
        self.log = data_dir / "vault.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def addr(self) -> str:
        return self.vault.addr

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(bao_argv(self.config), stdout=out, stderr=subprocess.STDOUT)
        proc = self.proc
        self.token = self.vault.prepare(alive=lambda: proc.poll() is None)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on loopback (what a collector does with ``/v1/traces``):
    keeps every span it is sent, decoded from the protobuf the exporter posts."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[Any] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.arrived:
                    for resource_spans in request.resource_spans:
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans.extend(scope_spans.spans)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, check: Callable[[list[Any]], bool], timeout: float = 30.0) -> list[Any]:
        """The spans received, once ``check`` holds for them (woken by each export)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: check(self.spans), timeout):
                raise AssertionError(f"the spans never matched; received {len(self.spans)}")
            return list(self.spans)


async def keyvault_service(nats_url: str, vault: VaultServer, edge_identities: Path) -> Keyvault:
    """A keyvault (services/keyvault) on this NATS and OpenBao, its bus connected, not started:
    the caller starts it (``start``, ``prepare_vault``) and stops it and closes ``.bus``."""
    settings = KeyvaultSettings(
        GATEWAY_NATS_URL=nats_url,
        VAULT_ADDR=vault.addr,
        VAULT_TOKEN=vault.token,
        GATEWAY_KEYVAULT_PORT=0,
        GATEWAY_EDGE_IDENTITIES_DIR=edge_identities,
    )
    bus = Bus.for_service(settings, "keyvault")
    await bus.connect(deadline=10)
    store = Vault(
        vault.addr,
        vault.token,
        transit_mount=settings.vault_transit_mount,
        transit_key=settings.vault_transit_key,
        kv_mount=settings.vault_kv_mount,
    )
    return Keyvault(settings, bus, store)
