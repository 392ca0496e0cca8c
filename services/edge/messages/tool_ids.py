"""A provider's signature on a tool call, carried in the call's id through the Messages API.

Gemini signs the function calls it makes while thinking and refuses the next turn unless
each comes back with its ``thoughtSignature``. A Messages API client sends back a
``tool_use`` block's ``id`` (and the ``tool_use_id`` of its result) exactly, but nothing
else the gateway might add, so the signature rides in the id: ``<id>__sig_<base64url>``,
whose characters fit Anthropic's id pattern (``[a-zA-Z0-9_-]``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

MARK = "__sig_"


def with_signature(call_id: str, extra: Any) -> str:
    if not isinstance(extra, dict) or not extra:
        return call_id
    packed = base64.urlsafe_b64encode(json.dumps(extra, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{call_id}{MARK}{packed}"


def signature_of(call_id: str) -> dict[str, Any] | None:
    """The provider's ``extra_content`` carried in ``call_id``, if any."""
    _, mark, packed = call_id.partition(MARK)
    if not mark:
        return None
    try:
        extra = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except (binascii.Error, ValueError):
        return None
    return extra if isinstance(extra, dict) else None
