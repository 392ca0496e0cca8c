"""The bus over TLS: a ``tls://`` URL and the CA that signed the server's certificate
(``GATEWAY_NATS_CA_FILE``), against a real nats-server that requires TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.bus import Bus, BusUnavailable
from tests.servers import ConfiguredNats, round_trip


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_tls_url_with_a_ca_file(tmp_path: Path) -> None:
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("switchyard test CA", ca_key, None, ca_key)
    cert = _certificate("127.0.0.1", server_key, ca, ca_key)
    ca_file = _pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    cert_file = _pem(tmp_path / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_file = _pem(
        tmp_path / "server-key.pem",
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    nats = ConfiguredNats(
        tmp_path / "nats",
        f"tls {{cert_file: {json.dumps(str(cert_file))}, key_file: {json.dumps(str(key_file))}}}\n",
    )
    nats.start()
    try:

        async def run() -> None:
            url = f"tls://127.0.0.1:{nats.port}"
            with pytest.raises(BusUnavailable):  # the server's CA is not one the system trusts
                await Bus(url, "untrusting").connect(deadline=1)

            bus = Bus(url, "trusting", ca_file=ca_file)
            await bus.connect(deadline=10)
            try:
                assert await round_trip(bus, "tls.check", b"over tls") == b"over tls"
            finally:
                await bus.close()

        asyncio.run(run())
    finally:
        nats.stop()
