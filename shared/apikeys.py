"""Client API keys: how they look and how they are hashed (keyvault mints, edges check)."""

from __future__ import annotations

import hashlib
import re
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


# What API keys look like in the text of a provider's error (OpenAI quotes a masked key back,
# "Incorrect API key provided: sk-proj-****...abcd"): the common prefixes (OpenAI, Anthropic,
# Switchyard, Groq, xAI, Google, AWS access key ids), a bearer token, and any run of 40 or more
# key characters.
_KEY_LIKE = re.compile(
    r"(?:\b(?:sk|pk|rk|gsk|xai)[-_][-_A-Za-z0-9*.]{4,}"
    r"|\bAIza[-_A-Za-z0-9]{10,}"
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{12,}"
    r"|(?i:bearer)\s+[-_A-Za-z0-9.~+/=*]{8,}"
    r"|[-_A-Za-z0-9+/=*]{40,})"
)


def redact_secrets(text: str) -> str:
    """``text`` with anything that looks like a key replaced by ``[redacted]``."""
    return _KEY_LIKE.sub("[redacted]", text)
