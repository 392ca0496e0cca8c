"""shared/errors.py: one table from an HTTP status to the error a client gets, used for the
gateway's own errors and for every provider's; an error's type is set when it is made."""

from __future__ import annotations

import pytest

from services.edge.providers.common import provider_error
from services.edge.providers.openai import from_openai_error
from shared.errors import ErrorBody, GatewayError, kind_for_status


@pytest.mark.parametrize(
    ("upstream", "status", "err_type"),
    [
        (400, 400, "invalid_request_error"),
        (401, 401, "authentication_error"),
        (403, 403, "permission_error"),
        (404, 404, "not_found_error"),
        (408, 408, "invalid_request_error"),
        (409, 409, "invalid_request_error"),  # was api_error for a provider's, the gateway's own said otherwise
        (413, 413, "invalid_request_error"),
        (429, 429, "rate_limit_error"),
        (500, 502, "api_error"),
        (503, 503, "api_error"),
    ],
)
def test_a_providers_error_gets_the_type_the_table_gives_its_status(upstream: int, status: int, err_type: str) -> None:
    error = provider_error(upstream, "no", "anthropic", {})
    assert (error.status, error.type) == (status, err_type)
    assert error.type == kind_for_status(status).type and error.upstream_status == upstream


def test_an_openai_format_provider_keeps_its_own_type_and_code() -> None:
    raw = b'{"error": {"message": "busy", "type": "tokens", "code": "rate_limit_exceeded", "param": null}}'
    error = from_openai_error(429, raw, "groq", {"retry-after": "2"})
    assert (error.status, error.type, error.code) == (429, "tokens", "rate_limit_exceeded")
    assert error.headers == {"retry-after": "2"}
    server = from_openai_error(500, b'{"error": {"message": "x", "type": "server_error"}}', "groq", {})
    assert (server.status, server.type) == (502, "api_error")  # its failure is the gateway's upstream error


def test_an_error_from_another_service_is_rebuilt_as_it_was() -> None:
    body = ErrorBody(message="taken", type="invalid_request_error", param="name", code="conflict")
    error = GatewayError.from_body(409, body)
    assert error.body() == body and error.status == 409 and error.kind.status == 409
