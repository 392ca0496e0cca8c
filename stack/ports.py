"""Loopback ports for the embedded servers.

A port handed to a child process is chosen here and bound there, and something else may take
it in between. Ports the kernel hands out for ``bind(0)`` come from the ephemeral range, the
same range every outgoing connection on the machine takes its port from: on a busy machine (two
test suites side by side) one of those connections took a port between its choice and its
use. So ports are chosen at random below the ephemeral range, where only listeners bind, and
never twice by one process.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

_GIVEN: set[int] = set()  # handed out by this process: not again, even once free
_LOWEST = 10_000


def _below_ephemeral() -> tuple[int, int] | None:
    """The ports under the kernel's ephemeral range (Linux: 32768-60999 by default)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (_LOWEST, low - 1) if low - 1 - _LOWEST >= 1000 else None


def free_port(host: str = "127.0.0.1") -> int:
    span = _below_ephemeral()
    if span is not None:
        for _ in range(200):
            port = random.randint(*span)
            if port not in _GIVEN and port_free(host, port):
                _GIVEN.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # elsewhere: the kernel's choice
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    _GIVEN.add(port)
    return port


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
