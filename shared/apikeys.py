"""Client API keys: how they look and how they are hashed (keyvault mints, edges check)."""

from __future__ import annotations

import hashlib
import secrets

CLIENT_KEY_PREFIX = "sk-sy-"


def new_client_key() -> str:
    """A high-entropy key (256 bits) with a recognisable prefix."""
    return CLIENT_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256 of the key. Keys carry 256 random bits, so a fast hash is not brute-forceable."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(CLIENT_KEY_PREFIX) + 4]
