"""``GATEWAY_NATS_CREDS``: a NATS ``.creds`` file (a user JWT and its nkey seed) against a real
nats-server in operator mode (decentralised auth: operator, account and user keys, JWTs the
server verifies). The JWTs are made here with the ``nkeys`` package, as ``nsc`` would."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import nkeys
import pytest

from shared.bus import Bus, BusUnavailable
from shared.settings import ServiceSettings
from tests.servers import ConfiguredNats, round_trip


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _jwt(issuer: nkeys.KeyPair, subject: str, claims: dict[str, object]) -> str:
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = {
        "jti": base64.b32encode(os.urandom(20)).decode(),
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "sub": subject,
        "name": subject[:8],
        "nats": {"version": 2, **claims},
    }
    payload = _b64(json.dumps(body).encode())
    signature = _b64(issuer.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{signature}"


def test_a_creds_file_authenticates_against_an_operator_mode_server(tmp_path: Path) -> None:
    operator = _key(nkeys.PREFIX_BYTE_OPERATOR)
    account = _key(nkeys.PREFIX_BYTE_ACCOUNT)
    user = _key(nkeys.PREFIX_BYTE_USER)
    operator_pub, account_pub = operator.public_key.decode(), account.public_key.decode()
    operator_jwt = _jwt(operator, operator_pub, {"type": "operator"})
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "conn": -1, "leaf": -1}
    account_jwt = _jwt(operator, account_pub, {"type": "account", "limits": {**unlimited, "wildcards": True}})
    user_jwt = _jwt(
        account,
        user.public_key.decode(),
        {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
    )
    creds = tmp_path / "edge.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )
    nats = ConfiguredNats(
        tmp_path / "nats",
        f'operator: "{operator_jwt}"\nresolver: MEMORY\nresolver_preload: {{ {account_pub}: "{account_jwt}" }}\n',
    )
    nats.start()
    try:

        async def run() -> None:
            with pytest.raises(BusUnavailable):  # no credentials: refused
                await Bus(nats.url, "anonymous").connect(deadline=1)
            settings = ServiceSettings(GATEWAY_NATS_URL=nats.url, GATEWAY_NATS_CREDS=creds)
            bus = Bus.for_service(settings, "edge")
            await bus.connect(deadline=10)
            try:
                signed_in = b"signed in with a .creds file"
                assert await round_trip(bus, "creds.check", signed_in) == signed_in
            finally:
                await bus.close()

        asyncio.run(run())
    finally:
        nats.stop()
