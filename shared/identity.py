"""Edge identities: which edges keyvault delivers provider keys to.

An edge identity is an Ed25519 key pair. The edge holds the private key in a file only its
user can read (``GATEWAY_EDGE_IDENTITY_FILE``); keyvault holds a registry of public keys, one
PEM file per identity named ``<name>.pub`` (``GATEWAY_EDGE_IDENTITIES_DIR``: a directory, a
Kubernetes ConfigMap or a compose volume). The edge signs each provider-key fetch: the
ephemeral X25519 key the keys are to be sealed to, the instance it names itself and the time.
Keyvault seals keys only to a fetch signed by a registered identity, and its audit names that
identity. Holding the edges' NATS credentials is no longer enough to receive provider keys, and
a signed fetch replayed by someone else gets keys sealed to the signer's ephemeral key, which
only the signer can open.

Keys are standard PEM (PKCS#8 private, SubjectPublicKeyInfo public), so ``openssl genpkey
-algorithm ed25519`` makes them as well as ``python -m shared.identity new NAME DIR``. The
registry is read again on every fetch: adding or removing a ``.pub`` file is in force at the
next fetch, without a restart.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.keyfile import private_file_problem
from shared.messages import ProviderKeyFetch

log = logging.getLogger("switchyard.identity")

_CONTEXT = b"switchyard provider-key fetch v1\n"
# How far a fetch's time may be from keyvault's clock. A replay within it gains nothing (the
# keys are sealed to the signer's ephemeral key); the bound keeps old signatures out of audit.
MAX_SKEW_SECONDS = 300.0
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SUFFIX = ".pub"


class IdentityError(Exception):
    """An identity file that cannot be used, or a fetch that no registered identity signed."""


def fetch_payload(public_key: str, edge_instance: str, issued_at: float) -> bytes:
    """The bytes an edge signs: what keyvault seals to, who asks, and when."""
    return _CONTEXT + b"\n".join(part.encode() for part in (public_key, edge_instance, repr(float(issued_at))))


def _raw_public(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class EdgeIdentity:
    """The edge's signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key = _raw_public(private.public_key())

    @classmethod
    def generate(cls) -> EdgeIdentity:
        return cls(Ed25519PrivateKey.generate())

    def public_pem(self) -> bytes:
        """This identity's registry entry."""
        return _public_pem(self._private.public_key())

    @classmethod
    def load(cls, path: Path) -> EdgeIdentity:
        """Read a PEM private key; like ssh, refuse a file other users could read."""
        problem = private_file_problem(path)
        if problem is not None:
            raise IdentityError(f"edge identity: {problem}")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError(f"{path} is not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{path} is not an Ed25519 key (openssl genpkey -algorithm ed25519)")
        return cls(key)

    def sign_fetch(self, public_key: str, edge_instance: str, issued_at: float) -> str:
        signature = self._private.sign(fetch_payload(public_key, edge_instance, issued_at))
        return base64.b64encode(signature).decode()

    def fetch(self, public_key: str, edge_instance: str, issued_at: float | None = None) -> ProviderKeyFetch:
        """A provider-key fetch for keys sealed to ``public_key``, signed by this identity now
        (or at ``issued_at``)."""
        at = time.time() if issued_at is None else issued_at
        return ProviderKeyFetch(
            public_key=public_key,
            edge_instance=edge_instance,
            identity=self.public_key,
            issued_at=at,
            signature=self.sign_fetch(public_key, edge_instance, at),
        )


def create(name: str, directory: Path) -> tuple[Path, Path]:
    """A new identity: ``<directory>/<name>.key`` (0600, never overwritten) and ``<name>.pub``
    for keyvault's registry. Returns both paths."""
    if not NAME.fullmatch(name):
        raise IdentityError(f"{name!r} is not an identity name (letters, digits, '.', '_', '-'; at most 64)")
    directory.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}{SUFFIX}"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise IdentityError(f"{key_path} exists; an identity is never overwritten") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(_public_pem(private.public_key()))
    return key_path, pub_path


def ensure(name: str, directory: Path, registry: Path | None = None, owner: int | None = None) -> Path:
    """The identity ``name`` in ``directory``, made if absent (a compose job runs this at every
    start); its public key written to ``registry``; the key handed to ``owner`` (the uid the
    edge runs as). Returns the key's path."""
    key_path = directory / f"{name}.key"
    if not key_path.exists():
        create(name, directory)
    if registry is not None:
        registry.mkdir(parents=True, exist_ok=True)
        (registry / f"{name}{SUFFIX}").write_bytes(public_pem(key_path))
    if owner is not None:
        os.chown(key_path, owner, -1)
    return key_path


def public_pem(key_path: Path) -> bytes:
    """The registry entry for the identity in ``key_path``."""
    return EdgeIdentity.load(key_path).public_pem()


@dataclass(frozen=True)
class Verified:
    name: str  # the registry's name for the identity that signed


class Registry:
    """Keyvault's list of edge identities: ``<name>.pub`` files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self) -> dict[str, tuple[str, Ed25519PublicKey]]:
        """Raw public key (base64) -> (name, key), read now. Files that are not an Ed25519
        public key are logged and skipped, never fatal: one bad entry must not lock out every
        edge."""
        try:
            paths = sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))
        except OSError as exc:
            raise IdentityError(f"cannot read the edge identity registry {self.directory}: {exc.strerror}") from exc
        found: dict[str, tuple[str, Ed25519PublicKey]] = {}
        for path in paths:
            name = path.name.removesuffix(SUFFIX)
            try:
                key = serialization.load_pem_public_key(path.read_bytes())
            except (OSError, ValueError) as exc:
                log.error("skipping edge identity %s: not a PEM public key (%s)", path, exc)
                continue
            if not NAME.fullmatch(name) or not isinstance(key, Ed25519PublicKey):
                log.error("skipping edge identity %s: not an Ed25519 key with a valid name", path)
                continue
            found[_raw_public(key)] = (name, key)
        return found

    def verify(self, fetch: ProviderKeyFetch, now: float | None = None) -> Verified:
        """The registered identity that signed this fetch, or :class:`IdentityError` saying why not."""
        if not fetch.identity or not fetch.signature:
            raise IdentityError("the fetch is not signed by an edge identity (set GATEWAY_EDGE_IDENTITY_FILE)")
        entry = self.load().get(fetch.identity)
        if entry is None:
            raise IdentityError(
                f"edge identity {fetch.identity[:12]}... is not registered in keyvault's GATEWAY_EDGE_IDENTITIES_DIR"
            )
        name, key = entry
        skew = abs((time.time() if now is None else now) - fetch.issued_at)
        if not skew <= MAX_SKEW_SECONDS:  # also refuses NaN
            raise IdentityError(f"the fetch signed by {name!r} is {skew:.0f} s away from keyvault's clock")
        try:
            key.verify(
                base64.b64decode(fetch.signature, validate=True),
                fetch_payload(fetch.public_key, fetch.edge_instance, fetch.issued_at),
            )
        except (InvalidSignature, ValueError) as exc:
            raise IdentityError(f"the signature does not match edge identity {name!r}") from exc
        return Verified(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.identity", description="Make an edge identity for keyvault's registry."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="write DIR/NAME.key (the edge's, 0600) and DIR/NAME.pub (keyvault's registry)")
    new.add_argument("name")
    new.add_argument("directory", type=Path)
    pub = sub.add_parser("public", help="print the registry entry (PEM public key) of a private key file")
    pub.add_argument("key", type=Path)
    keep = sub.add_parser("ensure", help="make DIR/NAME.key unless it exists; write NAME.pub into --registry")
    keep.add_argument("name")
    keep.add_argument("directory", type=Path)
    keep.add_argument("--registry", type=Path)
    keep.add_argument("--owner", type=int, help="the uid the edge runs as (the key stays mode 0600)")
    args = parser.parse_args(argv)
    try:
        if args.command == "new":
            key_path, pub_path = create(args.name, args.directory)
            print(f"{key_path}: the edge's GATEWAY_EDGE_IDENTITY_FILE\n{pub_path}: copy into keyvault's registry")
        elif args.command == "ensure":
            print(f"edge identity {ensure(args.name, args.directory, args.registry, args.owner)}")
        else:
            sys.stdout.write(public_pem(args.key).decode())
    except IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
