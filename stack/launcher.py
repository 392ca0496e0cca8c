"""The stack on one machine: NATS, OpenBao, and the services this node runs (all four by
default: router, keyvault, metering, edge).

Used by ``make up`` (``python -m stack``) and by the test suite, so tests run the stack the
way users do. ``GATEWAY_SERVICES`` picks the services, so one machine can play several nodes
against the same NATS, Vault and ClickHouse; with external NATS (``GATEWAY_NATS_URL``) and
Vault (``VAULT_ADDR``/``VAULT_TOKEN``) it starts neither, and it never starts a Vault for a
node without keyvault.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared import identity
from shared.bus import redact
from shared.catalog import load_catalog
from stack import nats_auth
from stack.nats import config_argv, write_config
from stack.openbao import EmbeddedVault, bao_argv
from stack.openbao import write_config as write_vault_config
from stack.ports import free_port, port_free, wait_port
from stack.settings import StackSettings
from stack.supervisor import ChildSpec, Supervisor

log = logging.getLogger("switchyard.stack")

REPO_ROOT = Path(__file__).resolve().parent.parent
# The port variable of each service's HTTP endpoints (the edge's is its API's).
PORT_VARIABLES = {
    "router": "GATEWAY_ROUTER_PORT",
    "keyvault": "GATEWAY_KEYVAULT_PORT",
    "metering": "GATEWAY_METERING_PORT",
    "edge": "GATEWAY_PORT",
}


@dataclass
class StackInfo:
    base_url: str  # the edge's API ("" on a node without an edge)
    admin_key: str
    nats_url: str  # without credentials
    vault_addr: str
    data_dir: Path
    nats_monitor_url: str | None = None  # the embedded NATS server's monitoring endpoint
    # Each service's /healthz and /readyz origin, by service name.
    health: dict[str, str] = field(default_factory=dict)
    # The embedded NATS's credentials by user (the services' and "admin"), for tests and operators.
    nats_users: dict[str, str] = field(default_factory=dict)
    # Services of this node that started as a standby (a metering waiting for the embedded
    # engine another process holds), with the reason they gave.
    standby: dict[str, str] = field(default_factory=dict)

    def nats_url_for(self, user: str) -> str:
        """The NATS URL with ``user``'s credentials (the URL itself against an external NATS)."""
        if user not in self.nats_users:
            return self.nats_url
        return nats_auth.with_user(self.nats_url, user, self.nats_users[user])


class Stack:
    def __init__(self, settings: StackSettings, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.data_dir = settings.data_dir.resolve()
        self.supervisor = Supervisor(log_max_bytes=settings.log_max_bytes, log_backups=settings.log_backups)
        self.vault_token = ""
        self.nats_monitor_url: str | None = None
        self.nats_users: dict[str, str] = {}
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
        nats_passwords = {nats_auth.password_variable(user) for user in (*nats_auth.SERVICES, nats_auth.ADMIN)}
        hidden = provider_key_vars | nats_passwords | {"VAULT_TOKEN", "GATEWAY_ADMIN_KEY", "VAULT_SECRET_ID"}
        env = {k: v for k, v in self.environ.items() if k not in hidden}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["GATEWAY_DATA_DIR"] = str(self.data_dir)
        env["GATEWAY_LOG_LEVEL"] = self.settings.log_level
        env["GATEWAY_DRAIN_SECONDS"] = str(self.settings.drain_seconds)
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
            # A stop lets the service drain first.
            stop_timeout=self.settings.drain_seconds + 10,
        )

    def _start_nats(self) -> str:
        if self.settings.nats_url:
            return self.settings.nats_url
        port = free_port()
        monitor = None
        if self.settings.nats_monitor_port is not None:
            monitor = self.settings.nats_monitor_port or free_port()
            self.nats_monitor_url = f"http://127.0.0.1:{monitor}"
        folder = self.data_dir / "nats"
        self.nats_users = nats_auth.load_or_create(folder / "users.json")
        config = write_config(
            folder / "nats.conf",
            name="switchyard",
            port=port,
            store_dir=folder / "jetstream",
            authorization=nats_auth.authorization(self.nats_users),
            monitor_port=monitor,
        )
        spec = ChildSpec("nats", config_argv(config), self._base_env(), self.data_dir / "logs" / "nats.log")
        self.supervisor.add(spec)
        self.supervisor.start("nats")
        if not wait_port("127.0.0.1", port, 20):
            raise RuntimeError("nats-server did not start; see " + str(spec.log_file))
        return f"nats://127.0.0.1:{port}"

    def _nats_url_for(self, service: str, nats_url: str) -> str:
        """Each service connects as its own user: to the embedded NATS with the generated
        passwords; to an external one with ``NATS_<SERVICE>_PASSWORD`` when set (the variables
        deploy/nats/auth.conf reads), else as the URL or ``GATEWAY_NATS_CREDS`` says."""
        if service in self.nats_users:
            return nats_auth.with_user(nats_url, service, self.nats_users[service])
        password = self.environ.get(nats_auth.password_variable(service))
        return nats_auth.with_user(nats_url, service, password) if password else nats_url

    def _add_vault(self) -> str:
        """Vault's address; the embedded OpenBao is added to the supervisor (in its place in
        the stop order) but started by ``_start_vault``."""
        if self.settings.external_vault:
            assert self.settings.vault_addr and self.settings.vault_token
            self.vault_token = self.settings.vault_token.get_secret_value()
            return self.settings.vault_addr
        if "keyvault" not in self.settings.service_list:
            return ""  # no service of this node talks to Vault
        port = free_port()
        config = write_vault_config(self.data_dir, port, free_port())
        vault = EmbeddedVault(self.data_dir, port)

        def unseal() -> None:
            self.vault_token = vault.prepare(alive=lambda: self.supervisor.pid("vault") is not None)

        spec = ChildSpec(
            "vault", bao_argv(config), self._base_env(), self.data_dir / "logs" / "vault.log", after_start=unseal
        )
        self.supervisor.add(spec)
        return vault.addr

    def _start_vault(self) -> None:
        """Start the embedded OpenBao and wait until it is unsealed and active (nothing to do
        with an external Vault or none)."""
        if "vault" not in self.supervisor.children:
            return
        self.supervisor.start("vault")
        if not self.vault_token:
            raise RuntimeError(
                "OpenBao did not become ready; see " + str(self.supervisor.children["vault"].spec.log_file)
            )

    def _edge_identity(self, services: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """The edge's ``GATEWAY_EDGE_IDENTITY_FILE`` and keyvault's ``GATEWAY_EDGE_IDENTITIES_DIR``
        where the environment names none: an identity ``local`` made once in the data dir, and
        a registry there that holds it when keyvault runs on this node. A registry the operator
        names is never written: another node's edge is registered by copying its ``.pub``."""
        folder = self.data_dir / "identity"
        edge_env: dict[str, str] = {}
        keyvault_env: dict[str, str] = {}
        key_file = self.environ.get("GATEWAY_EDGE_IDENTITY_FILE", "")
        if "edge" in services and not key_file:
            key = folder / "local.key"
            if not key.exists():
                identity.create("local", folder)
            key_file = edge_env["GATEWAY_EDGE_IDENTITY_FILE"] = str(key)
        if "keyvault" in services and not self.environ.get("GATEWAY_EDGE_IDENTITIES_DIR"):
            registry = folder / "edges"
            registry.mkdir(parents=True, exist_ok=True)
            if key_file:
                (registry / f"local{identity.SUFFIX}").write_bytes(identity.public_pem(Path(key_file)))
            keyvault_env["GATEWAY_EDGE_IDENTITIES_DIR"] = str(registry)
        return edge_env, keyvault_env

    def _port(self, service: str) -> int:
        if service == "edge":
            return self.settings.port or free_port()
        chosen = self.environ.get(PORT_VARIABLES[service], "")
        return int(chosen) if chosen.isdigit() and int(chosen) else free_port()

    # --- the stack -----------------------------------------------------------------------

    def start(self) -> StackInfo:
        services = self.settings.service_list
        if "edge" in services and self.settings.port and not port_free(self.settings.host, self.settings.port):
            raise RuntimeError(
                f"{self.settings.host}:{self.settings.port} is already in use; set GATEWAY_PORT to another port"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # keys, logs, the bus's and the engine's files: the owner's only
        admin_key = self._admin_key()
        nats_url = self._start_nats()
        vault_addr = self._add_vault()
        base = self._base_env()
        edge_identity, registry = self._edge_identity(services)

        keyvault_env = base | registry | {"VAULT_ADDR": vault_addr}
        if self.environ.get("VAULT_SECRET_ID"):
            keyvault_env["VAULT_SECRET_ID"] = self.environ["VAULT_SECRET_ID"]
        provider_keys = {p.key_env for p in load_catalog().providers.values() if p.key_env}
        keyvault_env |= {k: v for k, v in self.environ.items() if k in provider_keys and v}
        extra: dict[str, dict[str, str]] = {
            "keyvault": keyvault_env,
            "edge": base
            | edge_identity
            | {"GATEWAY_ADMIN_KEY": admin_key, "GATEWAY_EDGE_WORKERS": str(self.settings.edge_workers)},
        }
        if self.settings.clickhouse_dsn:
            extra["metering"] = base | {"GATEWAY_CLICKHOUSE_DSN": self.settings.clickhouse_dsn}
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::") else self.settings.host
        health: dict[str, str] = {}
        for name in services:
            port = self._port(name)
            env = extra.get(name, base) | {
                "GATEWAY_NATS_URL": self._nats_url_for(name, nats_url),
                "GATEWAY_HOST": self.settings.host,
                PORT_VARIABLES[name]: str(port),
            }
            self._envs[name] = env
            health[name] = f"http://{host}:{port}"
            if name != "edge":
                log.info("%s: /healthz and /readyz on %s", name, health[name])
            self.supervisor.add(self._service(name, env))
        # The services that need no Vault start first: their start-up (mostly Python imports)
        # overlaps OpenBao's, which is mostly waiting on raft's timers. Keyvault starts with
        # the token once OpenBao is unsealed.
        for name in services:
            if name != "keyvault":
                self.supervisor.start(name)
        self._start_vault()
        if "keyvault" in services:
            self._envs["keyvault"]["VAULT_TOKEN"] = self.vault_token  # the spec's environment
            self.supervisor.start("keyvault")

        standby = {}
        for name in services:
            reason = self.wait_ready(health[name])
            if reason:
                log.warning("%s is a standby: %s", name, reason)
                standby[name] = reason
        origin = health.get("edge")
        self.info = StackInfo(
            f"{origin}/v1" if origin else "",
            admin_key,
            redact(nats_url),
            vault_addr,
            self.data_dir,
            self.nats_monitor_url,
            health,
            dict(self.nats_users),
            standby,
        )
        state = {
            "base_url": self.info.base_url,
            "nats_url": self.info.nats_url,
            "vault_addr": vault_addr,
            "services": services,
            "health": health,
            "pid": os.getpid(),
        }
        fd = os.open(self.data_dir / "stack.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        return self.info

    def wait_ready(self, origin: str) -> str | None:
        """Wait until the service at ``origin`` is ready (None) or says it is a standby (its
        reason): a standby is started, not ready, and never reported as up."""
        deadline = time.monotonic() + self.settings.ready_timeout
        last = "no answer"
        with httpx.Client(timeout=3.0) as client:
            while time.monotonic() < deadline:
                try:
                    resp = client.get(f"{origin}/readyz")
                    if resp.status_code == 200:
                        return None
                    last = resp.text
                    if resp.headers.get("content-type", "").startswith("application/json"):
                        body = resp.json()
                        if body.get("status") == "standby":
                            return str(body.get("standby") or "standby")
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.2)
        raise RuntimeError(f"{origin} did not become ready in {self.settings.ready_timeout:.0f}s: {last}")

    def add_replica(self, service: str, name: str, env: dict[str, str | None]) -> str:
        """Start one more process of ``service`` (a replica on this machine), its environment
        changed by ``env`` (None removes a variable); returns the origin of its port (its
        /healthz and /readyz; the edge's API)."""
        changed = dict(self._envs[service])
        changed[PORT_VARIABLES[service]] = str(free_port())  # its own /healthz port (the edge's API)
        for key, value in env.items():
            if value is None:
                changed.pop(key, None)
            else:
                changed[key] = value
        spec = self._service(service, changed)
        spec.name, spec.log_file = name, self.data_dir / "logs" / f"{name}.log"
        self.supervisor.add(spec)
        self.supervisor.start(name)
        return f"http://127.0.0.1:{changed[PORT_VARIABLES[service]]}"

    def add_edge(self, name: str, env: dict[str, str | None] | None = None, *, wait: bool = True) -> str:
        """A second edge on its own port, its environment changed by ``env``; returns its origin
        URL, once it is ready unless ``wait`` is false."""
        port = free_port()
        changes: dict[str, str | None] = {"GATEWAY_PORT": str(port), "GATEWAY_EDGE_WORKERS": "1"}
        self.add_replica("edge", name, changes | (env or {}))
        origin = f"http://127.0.0.1:{port}"
        if wait:
            self.wait_ready(origin)
        return origin

    def stop(self) -> None:
        self.supervisor.stop_all()
