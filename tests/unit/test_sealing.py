from __future__ import annotations

import base64

import pytest

from shared.sealing import Recipient, SealingError, seal


def test_only_the_recipient_opens_a_sealed_secret() -> None:
    edge = Recipient()
    sealed = seal(edge.public_key_b64, b"sk-live-secret", context=b"pk_1")
    assert b"sk-live-secret" not in base64.b64decode(sealed)
    assert edge.open(sealed, context=b"pk_1") == b"sk-live-secret"
    with pytest.raises(SealingError):
        Recipient().open(sealed, context=b"pk_1")


def test_context_binds_the_blob_to_its_key_id() -> None:
    edge = Recipient()
    sealed = seal(edge.public_key_b64, b"secret", context=b"pk_1")
    with pytest.raises(SealingError):
        edge.open(sealed, context=b"pk_2")


def test_each_seal_is_fresh_and_tampering_is_detected() -> None:
    edge = Recipient()
    a = seal(edge.public_key_b64, b"secret")
    assert a != seal(edge.public_key_b64, b"secret")
    raw = bytearray(base64.b64decode(a))
    raw[-1] ^= 1
    with pytest.raises(SealingError):
        edge.open(base64.b64encode(bytes(raw)).decode())
    with pytest.raises(SealingError):
        edge.open("not base64!!")
    with pytest.raises(SealingError):
        seal("AAAA", b"x")


def test_a_stored_key_pair_opens_what_was_sealed_to_it() -> None:
    keyvault = Recipient()
    restored = Recipient.from_private_b64(keyvault.private_b64())
    assert restored.public_key_b64 == keyvault.public_key_b64
    assert restored.open(seal(keyvault.public_key_b64, b"new key", context=b"c"), context=b"c") == b"new key"
    with pytest.raises(SealingError):
        Recipient.from_private_b64("short")
