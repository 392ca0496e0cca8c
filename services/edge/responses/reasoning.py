"""A reasoning item's ``encrypted_content``: the provider's own thinking blocks (Anthropic's
with their signatures, byte for byte), so a later turn can hand them back exactly.

It is opaque to clients but not a secret: it is the base64 of the blocks' JSON, marked with
a prefix so that content the gateway did not make (OpenAI's encrypted reasoning) is told
apart and left out of a translated request instead of being sent where it means nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

PREFIX = "swy1."


def seal(blocks: list[dict[str, Any]]) -> str:
    return PREFIX + base64.urlsafe_b64encode(json.dumps(blocks, separators=(",", ":")).encode()).decode()


def unseal(content: str | None) -> list[dict[str, Any]]:
    """The thinking blocks, or none for content this gateway did not make."""
    if not content or not content.startswith(PREFIX):
        return []
    try:
        blocks = json.loads(base64.urlsafe_b64decode(content[len(PREFIX) :]))
    except (binascii.Error, ValueError):
        return []
    if not isinstance(blocks, list):
        return []
    return [b for b in blocks if isinstance(b, dict)]
