"""shared/apikeys.py: what looks like a key in a provider's words is redacted; ids and model
names are not."""

from __future__ import annotations

import pytest

from services.edge.providers.openai import from_openai_error
from shared.apikeys import new_client_key, redact_secrets


@pytest.mark.parametrize(
    "secret",
    [
        "sk-canar****************************0004",  # OpenAI quotes a masked key back
        "sk-proj-AbCdEf0123456789",
        "sk-ant-api03-AbCdEf0123456789",
        new_client_key(),
        "gsk_0123456789abcdef",
        "xai-0123456789abcdef",
        "AIzaSyA1234567890abcdefghijk",
        "AKIAIOSFODNN7EXAMPLE",
        "Bearer abcdefghijklmnop",
        "0123456789abcdef0123456789abcdef0123456789abcdef",  # a long token without a prefix
    ],
)
def test_key_like_strings_are_redacted(secret: str) -> None:
    redacted = redact_secrets(f"Incorrect API key provided: {secret} (see the docs)")
    assert secret not in redacted and "[redacted]" in redacted
    assert redacted.startswith("Incorrect API key provided: ") and redacted.endswith("(see the docs)")


@pytest.mark.parametrize(
    "text",
    [
        "The model `gpt-4o-2024-08-06` does not exist or you do not have access to it.",
        "claude-sonnet-4-6 is overloaded; request req_0123456789abcdef0123456789abcdef",
        "max_tokens: 999999 > 8192, which is the maximum allowed",
        "the task-force and desk_lamp are words",
    ],
)
def test_ordinary_error_text_is_left_alone(text: str) -> None:
    assert redact_secrets(text) == text


def test_a_provider_error_reaches_the_client_without_the_key() -> None:
    raw = (
        b'{"error": {"message": "Incorrect API key provided: sk-canar****0004. You can find your API key at '
        b'https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, '
        b'"code": "invalid_api_key"}}'
    )
    error = from_openai_error(401, raw, "openai", {})
    assert "sk-canar" not in error.message and "0004" not in error.message
    assert error.message.startswith("Incorrect API key provided: [redacted]") and error.code == "invalid_api_key"
