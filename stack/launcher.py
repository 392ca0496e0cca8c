"""The whole stack on one machine: NATS, OpenBao, router, keyvault, metering and edge.

Used by ``make up`` (``python -m stack``) and by the test suite, so tests run the stack the
way users do.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.catalog import load_catalog
from stack.nats import nats_argv
from stack.openbao import EmbeddedVault, bao_argv, write_config
from stack.ports import free_port, port_free, wait_port
from stack.settings import StackSettings
from stack.supervisor import ChildSpec, Supervisor

log = logging.getLogger("switchyard.stack")

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("router", "keyvault", "metering", "edge")


@dataclass
class StackInfo:
    base_url: str
    admin_key: str
    nats_url: str
    vault_addr: str
    data_dir: Path
    nats_monitor_url: str | None = None  # the embedded NATS server's monitoring endpoint


class Stack:
    def __init__(self, settings: StackSettings, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.data_dir = settings.data_dir.resolve()
        self.supervisor = Supervisor()
        self.vault_token = ""
        self.nats_monitor_url: str | None = None
        self._envs: dict[str, dict[str, str]] = {}
        self.info: StackInfo | None = None

    # --- pieces --------------------------------------------------------------------------

    def _admin_key(self) -> str:
        if self.settings.admin_key is not None and self.settings.admin_key.get_secret_value():
            return self.settings.admin_key.get_secret_value()
        path = self.data_dir / "admin_key"
        if path.exists():
            return path.read_text().strip()
        key = "sk-sy-admin-" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        return key

    def _base_env(self) -> dict[str, str]:
        """The launcher's environment without secrets: each child gets only what it needs."""
        provider_key_vars = {p.key_env for p in load_catalog().providers.values() if p.key_env}
        hidden = provider_key_vars | {"VAULT_TOKEN", "GATEWAY_ADMIN_KEY"}
        env = {k: v for k, v in self.environ.items() if k not in hidden}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["GATEWAY_DATA_DIR"] = str(self.data_dir)
        env["GATEWAY_LOG_LEVEL"] = self.settings.log_level
        return env

    def _service(self, name: str, env: dict[str, str]) -> ChildSpec:
        return ChildSpec(
            name=name,
            argv=[sys.executable, "-m", f"services.{name}"],
            env=env,
            log_file=self.data_dir / "logs" / f"{name}.log",
            # On one machine the edge is the latency-critical process; metering's batch inserts
            # and the other services' housekeeping can wait a few milliseconds.
            nice=0 if name == "edge" else 19,
        )

    def _start_nats(self) -> str:
        if self.settings.nats_url:
            return self.settings.nats_url
        port, monitor = free_port(), free_port()
        self.nats_monitor_url = f"http://127.0.0.1:{monitor}"
        argv = nats_argv(self.data_dir, port, monitor)
        spec = ChildSpec("nats", argv, self._base_env(), self.data_dir / "logs" / "nats.log")
        self.supervisor.add(spec)
        self.supervisor.start("nats")
        if not wait_port("127.0.0.1", port, 20):
            raise RuntimeError("nats-server did not start; see " + str(spec.log_file))
        return f"nats://127.0.0.1:{port}"

    def _start_vault(self) -> str:
        if self.settings.external_vault:
            assert self.settings.vault_addr and self.settings.vault_token
            self.vault_token = self.settings.vault_token.get_secret_value()
            return self.settings.vault_addr
        port = free_port()
        config = write_config(self.data_dir, port, free_port())
        vault = EmbeddedVault(self.data_dir, port)

        def unseal() -> None:
            self.vault_token = vault.prepare(alive=lambda: self.supervisor.pid("vault") is not None)

        spec = ChildSpec(
            "vault", bao_argv(config), self._base_env(), self.data_dir / "logs" / "vault.log", after_start=unseal
        )
        self.supervisor.add(spec)
        self.supervisor.start("vault")
        if not self.vault_token:
            raise RuntimeError("OpenBao did not become ready; see " + str(spec.log_file))
        return vault.addr

    # --- the stack -----------------------------------------------------------------------

    def start(self) -> StackInfo:
        if self.settings.port and not port_free(self.settings.host, self.settings.port):
            raise RuntimeError(
                f"{self.settings.host}:{self.settings.port} is already in use; set GATEWAY_PORT to another port"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        admin_key = self._admin_key()
        nats_url = self._start_nats()
        vault_addr = self._start_vault()
        port = self.settings.port or free_port()
        base = self._base_env() | {"GATEWAY_NATS_URL": nats_url}

        keyvault_env = base | {"VAULT_ADDR": vault_addr, "VAULT_TOKEN": self.vault_token}
        provider_keys = {p.key_env for p in load_catalog().providers.values() if p.key_env}
        keyvault_env |= {k: v for k, v in self.environ.items() if k in provider_keys and v}
        edge_env = base | {
            "GATEWAY_ADMIN_KEY": admin_key,
            "GATEWAY_HOST": self.settings.host,
            "GATEWAY_PORT": str(port),
            "GATEWAY_EDGE_WORKERS": str(self.settings.edge_workers),
        }
        metering_env = dict(base)
        if self.settings.clickhouse_dsn:
            metering_env["GATEWAY_CLICKHOUSE_DSN"] = self.settings.clickhouse_dsn
        envs = {"router": base, "keyvault": keyvault_env, "metering": metering_env, "edge": edge_env}
        self._envs = envs
        for name in SERVICES:
            self.supervisor.add(self._service(name, envs[name]))
            self.supervisor.start(name)

        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::") else self.settings.host
        origin = f"http://{host}:{port}"
        self._wait_ready(origin)
        self.info = StackInfo(f"{origin}/v1", admin_key, nats_url, vault_addr, self.data_dir, self.nats_monitor_url)
        (self.data_dir / "stack.json").write_text(
            json.dumps(
                {"base_url": self.info.base_url, "nats_url": nats_url, "vault_addr": vault_addr, "pid": os.getpid()}
            )
        )
        return self.info

    def _wait_ready(self, origin: str) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        last = "no answer"
        with httpx.Client(timeout=3.0) as client:
            while time.monotonic() < deadline:
                try:
                    resp = client.get(f"{origin}/readyz")
                    if resp.status_code == 200:
                        return
                    last = resp.text
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.2)
        raise RuntimeError(f"the gateway did not become ready in {self.settings.ready_timeout:.0f}s: {last}")

    def add_replica(self, service: str, name: str, env: dict[str, str | None]) -> None:
        """Start one more process of ``service`` (a replica on this machine), its environment
        changed by ``env`` (None removes a variable)."""
        changed = dict(self._envs[service])
        for key, value in env.items():
            if value is None:
                changed.pop(key, None)
            else:
                changed[key] = value
        spec = self._service(service, changed)
        spec.name, spec.log_file = name, self.data_dir / "logs" / f"{name}.log"
        self.supervisor.add(spec)
        self.supervisor.start(name)

    def add_edge(self, name: str) -> str:
        """A second edge on its own port; returns its origin URL once it is ready."""
        port = free_port()
        self.add_replica("edge", name, {"GATEWAY_PORT": str(port), "GATEWAY_EDGE_WORKERS": "1"})
        origin = f"http://127.0.0.1:{port}"
        self._wait_ready(origin)
        return origin

    def stop(self) -> None:
        self.supervisor.stop_all()
