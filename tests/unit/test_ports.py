"""stack/ports.py: ports for children come from below the ephemeral range (where outgoing
connections never take one), are free when chosen, and are never handed out twice."""

from __future__ import annotations

import socket
from pathlib import Path

from stack.ports import free_port, port_free


def test_ports_are_free_distinct_and_outside_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)
    # Each is free to bind as a listener.
    for port in ports[:20]:
        assert port_free("127.0.0.1", port)


def test_a_port_with_a_listener_is_not_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_free("127.0.0.1", sock.getsockname()[1])
