"""Sealed delivery of secrets to one recipient: X25519 + HKDF-SHA256 + AES-256-GCM.

The recipient (an edge) holds an ephemeral X25519 key pair that never leaves its memory and
sends its public key. The sender makes a fresh key pair per message, derives an AES key from
the shared secret, and sends ``sender public key || nonce || ciphertext``. Only the holder of
the recipient's private key can open it; a bus observer sees only ciphertext.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"switchyard sealed secret v1"
_PUB_LEN = 32
_NONCE_LEN = 12


class SealingError(Exception):
    pass


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, sender_pub: bytes, recipient_pub: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=sender_pub + recipient_pub, info=_INFO)
    return hkdf.derive(shared)


class Recipient:
    """An ephemeral key pair that can open secrets sealed to its public key."""

    def __init__(self, private: X25519PrivateKey | None = None) -> None:
        self._private = private or X25519PrivateKey.generate()
        self._public = _raw_public(self._private.public_key())

    @classmethod
    def from_private_b64(cls, value: str) -> Recipient:
        try:
            raw = base64.b64decode(value, validate=True)
            return cls(X25519PrivateKey.from_private_bytes(raw))
        except ValueError as exc:
            raise SealingError("not a base64 X25519 private key") from exc

    def private_b64(self) -> str:
        """For storing the key pair in Vault only (keyvault's transport key)."""
        raw = self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(raw).decode()

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self._public).decode()

    def open(self, sealed_b64: str, context: bytes = b"") -> bytes:
        try:
            blob = base64.b64decode(sealed_b64, validate=True)
        except ValueError as exc:
            raise SealingError("sealed blob is not base64") from exc
        if len(blob) < _PUB_LEN + _NONCE_LEN + 16:
            raise SealingError("sealed blob too short")
        sender_pub = blob[:_PUB_LEN]
        nonce = blob[_PUB_LEN : _PUB_LEN + _NONCE_LEN]
        ciphertext = blob[_PUB_LEN + _NONCE_LEN :]
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(sender_pub))
        key = _derive(shared, sender_pub, self._public)
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, context)
        except Exception as exc:  # cryptography raises InvalidTag
            raise SealingError("sealed blob failed authentication") from exc


def seal(recipient_public_b64: str, plaintext: bytes, context: bytes = b"") -> str:
    """Seal ``plaintext`` so that only the holder of the recipient's private key can read it.

    ``context`` is bound as associated data (for instance the key id), so a sealed blob
    cannot be replayed as another key.
    """
    try:
        recipient_raw = base64.b64decode(recipient_public_b64, validate=True)
        recipient = X25519PublicKey.from_public_bytes(recipient_raw)
    except ValueError as exc:
        raise SealingError("recipient public key is not a base64 X25519 key") from exc
    ephemeral = X25519PrivateKey.generate()
    sender_pub = _raw_public(ephemeral.public_key())
    key = _derive(ephemeral.exchange(recipient), sender_pub, recipient_raw)
    nonce = os.urandom(_NONCE_LEN)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, context)
    return base64.b64encode(sender_pub + nonce + ciphertext).decode()
