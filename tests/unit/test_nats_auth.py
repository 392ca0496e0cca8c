"""NATS authentication and least privilege on a real nats-server configured as ``make up``
configures its embedded one: no credentials, no connection; each service only where its
work needs it."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import subjects
from shared.bus import Bus, BusUnavailable
from shared.errors import GatewayError
from shared.messages import Empty, Ping
from stack import nats_auth
from tests.servers import AuthNatsServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AuthNatsServer]:
    passwords = nats_auth.load_or_create(tmp_path / "users.json")
    nats = AuthNatsServer(tmp_path / "nats", passwords)
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "nats" / "users.json"
    first = nats_auth.load_or_create(path)
    assert set(first) == {*nats_auth.SERVICES, nats_auth.ADMIN}
    assert len(set(first.values())) == len(first)  # one password per user
    assert nats_auth.load_or_create(path) == first  # kept across starts
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unauthenticated_connection_is_refused(server: AuthNatsServer) -> None:
    async def run() -> None:
        with pytest.raises(BusUnavailable):
            await Bus(server.url, "intruder").connect(deadline=1)
        wrong = nats_auth.with_user(server.url, "edge", "not-the-password")
        with pytest.raises(BusUnavailable):
            await Bus(wrong, "intruder").connect(deadline=1)

    asyncio.run(run())


def test_an_edge_cannot_write_the_client_key_bucket_or_answer_keyvault(server: AuthNatsServer) -> None:
    async def run() -> None:
        keyvault = Bus(server.url_for("keyvault"), "keyvault", service="keyvault")
        edge = Bus(server.url_for("edge"), "edge", service="edge")
        admin = Bus(server.url_for("admin"), "admin")
        for bus in (keyvault, edge, admin):
            await bus.connect(deadline=10)
        try:
            owned = await keyvault.ensure_kv(subjects.CLIENT_KEYS_BUCKET)
            await owned.put("key_real", b"a record keyvault wrote")

            # The edge reads the bucket (its key cache watches it)...
            readable = await edge.kv(subjects.CLIENT_KEYS_BUCKET, create=False)
            assert (await readable.get("key_real")).value == b"a record keyvault wrote"
            # ...but a record of its own making is refused, and nothing is stored.
            with pytest.raises(Exception):  # noqa: B017 - nats-py reports the refusal as a timeout
                await asyncio.wait_for(readable.put("key_minted", b"a key the edge made up"), timeout=3)
            keys = await (await keyvault.kv(subjects.CLIENT_KEYS_BUCKET)).keys()
            assert keys == ["key_real"]

            # An edge subscribing to keyvault's requests (another edge's provider-key fetch)
            # gets none of them: the request finds no responder at all.
            async def steal(_: Empty) -> Ping:
                return Ping(service="edge", instance="thief")

            await edge.serve(subjects.PROVIDER_KEYS_FETCH, "thieves", Empty, steal)
            await edge.nc.flush()
            with pytest.raises(GatewayError, match="no service answers"):
                await admin.request(subjects.PROVIDER_KEYS_FETCH, Empty(), Ping, timeout=2)

            # What the edge is for still works: it publishes usage events.
            await keyvault.nc.flush()
            await edge.publish(subjects.USAGE_SUBJECT, Empty())
        finally:
            for bus in (keyvault, edge, admin):
                await bus.close()

    asyncio.run(run())


def test_the_deploy_file_is_generated_from_the_table() -> None:
    root = Path(__file__).resolve().parents[2]
    assert (root / "deploy" / "nats" / "auth.conf").read_text() == nats_auth.deploy_file(), (
        "run `python -m stack.nats_auth > deploy/nats/auth.conf`"
    )


def test_every_service_has_its_own_inbox_and_none_writes_another_owners_bucket() -> None:
    table = nats_auth.permissions()
    for service, perms in table.items():
        assert f"_INBOX.{service}.>" in perms.subscribe
        assert not any(s.startswith("_INBOX") and s != f"_INBOX.{service}.>" for s in perms.subscribe)
    assert f"$KV.{subjects.CLIENT_KEYS_BUCKET}.>" not in table["edge"].publish
    assert f"$KV.{subjects.ROUTES_BUCKET}.>" not in table["edge"].publish
    writers = {s for s, p in table.items() if f"$KV.{subjects.CLIENT_KEYS_BUCKET}.>" in p.publish}
    assert writers == {"keyvault"}
    assert not any(".DELETE." in x and "CONSUMER" not in x for p in table.values() for x in p.publish)


def test_the_readme_documents_the_permission_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert nats_auth.markdown() in readme, "the README's NATS permission table is stale"
