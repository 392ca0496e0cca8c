"""``make up`` as users run it: supervision, a clean stop, and data that survives a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI

from stack import procs
from stack.launcher import REPO_ROOT
from tests.conftest import PROVIDER_KEY, files_containing, stack_environ, wait_until
from tests.simulators.openai_sim import OpenAISimulator

_children = procs.children
_cmdline = procs.cmdline
_alive = procs.alive


def _tree(pid: int) -> set[int]:
    return set(procs.descendants(pid))


class Launcher:
    def __init__(self, data_dir: Path, sim: OpenAISimulator, out: Path) -> None:
        env = stack_environ(sim, GATEWAY_DATA_DIR=str(data_dir), GATEWAY_PORT="0", GATEWAY_EDGE_WORKERS="2")
        self.data_dir = data_dir
        self.out_path = out
        self.out = out.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stack"], cwd=REPO_ROOT, env=env, stdout=self.out, stderr=subprocess.STDOUT
        )
        wait_until(self._up, timeout=120, what="make up to print the base URL")
        self.base_url = json.loads((data_dir / "stack.json").read_text())["base_url"]
        self.admin_key = (data_dir / "admin_key").read_text().strip()

    def output(self) -> str:
        return self.out_path.read_text()

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.output()
        return "Switchyard is up" in self.output()

    def client(self, key: str | None = None) -> OpenAI:
        return OpenAI(base_url=self.base_url, api_key=key or self.admin_key, max_retries=0)

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        origin = self.base_url.removesuffix("/v1")
        return httpx.request(
            method, origin + path, headers={"authorization": f"Bearer {self.admin_key}"}, timeout=30, **kwargs
        )

    def service_pid(self, name: str) -> int:
        for pid in _children(self.proc.pid):
            if f"-m services.{name}" in _cmdline(pid) or (name == "nats" and "nats-server" in _cmdline(pid)):
                return pid
        raise AssertionError(f"{name} is not running")

    def stop(self) -> set[int]:
        """SIGTERM, as Ctrl-C would; returns every process the launcher had started."""
        tree = _tree(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, self.output()
        self.out.close()
        return tree


def test_make_up_supervises_stops_cleanly_and_keeps_data(tmp_path: Path, sim: OpenAISimulator) -> None:
    data = tmp_path / "data"
    first = Launcher(data, sim, tmp_path / "first.out")
    try:
        assert "admin key" in first.output() and first.admin_key in first.output()
        assert PROVIDER_KEY not in first.output()
        assert oct((data / "admin_key").stat().st_mode & 0o777) == "0o600"
        assert oct((data / "vault" / "init.json").stat().st_mode & 0o777) == "0o600"
        assert oct(data.stat().st_mode & 0o777) == "0o700"  # nothing under it for other users
        logs = sorted((data / "logs").glob("*.log"))
        assert logs and all(oct(log.stat().st_mode & 0o777) == "0o600" for log in logs), logs
        # NATS's monitoring endpoint answers anyone without credentials: not started unless asked.
        assert "http_port" not in (data / "nats" / "nats.conf").read_text()
        # The edge's identity, made here and registered with this node's keyvault.
        assert oct((data / "identity" / "local.key").stat().st_mode & 0o777) == "0o600"
        assert (data / "identity" / "edges" / "local.pub").read_bytes() == (
            data / "identity" / "local.pub"
        ).read_bytes()

        created = first.admin("POST", "/ai/keys", json={"user": "ivan", "name": "laptop"}).json()
        user_key = created["key"]
        wait_until(lambda: first.admin("GET", "/ai/usage/summary").status_code == 200, what="usage API")
        wait_until(
            lambda: (
                httpx.get(first.base_url + "/models", headers={"authorization": f"Bearer {user_key}"}).status_code
                == 200
            ),
            what="key",
        )
        for _ in range(4):
            first.client(user_key).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])

        def ivan_requests(launcher: Launcher) -> int:
            resp = launcher.admin("GET", "/ai/usage/summary", params={"user": "ivan", "period": "24h"})
            return int(resp.json()["total_requests"]) if resp.status_code == 200 else -1

        wait_until(lambda: ivan_requests(first) == 4, what="4 metered requests")

        # A child that dies is restarted with backoff, and the restart is logged.
        router = first.service_pid("router")
        os.kill(router, signal.SIGKILL)
        wait_until(lambda: "router exited with code -9; restarting" in first.output(), what="the restart log line")
        wait_until(
            lambda: any("services.router" in _cmdline(p) and p != router for p in _children(first.proc.pid)),
            what="a new router",
        )
    finally:
        tree = first.stop()
    assert len(tree) >= 7  # nats, vault, four services, edge workers
    time.sleep(0.5)
    assert [p for p in tree if _alive(p)] == [], "processes left behind after SIGTERM"

    # A second start reuses the data: client keys, provider keys and usage are all there.
    second = Launcher(data, sim, tmp_path / "second.out")
    try:
        reply = second.client(user_key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "again"}]
        )
        assert reply.choices[0].message.content
        keys = second.admin("GET", "/ai/providers/keys").json()["data"]
        # OPENAI_API_KEY was imported once, not once per start.
        assert [k["provider"] for k in keys if k["source"] == "env"].count("openai") == 1
        wait_until(lambda: ivan_requests(second) == 5, what="usage from both runs")
    finally:
        tree = second.stop()
    time.sleep(0.5)
    assert [p for p in tree if _alive(p)] == []

    # The provider key from the environment is nowhere in the data dir in plaintext: not in a
    # log, the NATS store, ClickHouse, the spool, nor Vault's own (encrypted) storage.
    needle = PROVIDER_KEY.encode()
    assert files_containing(data, needle) == []


def test_make_up_refuses_a_busy_port_clearly(tmp_path: Path, sim: OpenAISimulator) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = stack_environ(sim, GATEWAY_DATA_DIR=str(tmp_path / "d"), GATEWAY_PORT=str(port))
        out = subprocess.run(
            [sys.executable, "-m", "stack"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 1
    assert f"127.0.0.1:{port} is already in use; set GATEWAY_PORT" in out.stdout + out.stderr
    assert not (tmp_path / "d" / "nats").exists()  # nothing was started
