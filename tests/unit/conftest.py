"""Fixtures the unit tests of bus code share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import NatsServer, VaultServer


@pytest.fixture()
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own, without authentication, stopped at the test's end."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def vault_server(tmp_path: Path) -> Iterator[VaultServer]:
    """An OpenBao of the test's own, initialised and unsealed, stopped at the test's end."""
    server = VaultServer(tmp_path / "vault")
    server.start()
    yield server
    server.stop()
