"""Servers the tests start by themselves, with the project's own launch helpers."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stack.nats import nats_argv
from stack.ports import free_port, wait_port


class NatsServer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            nats_argv(self.data_dir, self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert wait_port("127.0.0.1", self.port, 10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
