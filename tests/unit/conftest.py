"""Fixtures the unit tests of bus code share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import NatsServer


@pytest.fixture()
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own, without authentication, stopped at the test's end."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()
