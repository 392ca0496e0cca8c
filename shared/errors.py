"""The one error table: every failure the gateway reports, in OpenAI's error shape.

Foreign errors (upstream HTTP statuses, transport failures, bus failures) are mapped here
once, at the boundary, into a :class:`GatewayError` that carries the HTTP status, the OpenAI
error ``type`` and ``code``, and the log level to use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class ErrorKind:
    status: int
    type: str
    code: str | None
    log_level: int


INVALID_REQUEST = ErrorKind(400, "invalid_request_error", None, logging.INFO)
INVALID_JSON = ErrorKind(400, "invalid_request_error", "invalid_json", logging.INFO)
MISSING_PARAM = ErrorKind(400, "invalid_request_error", "missing_required_parameter", logging.INFO)
UNSUPPORTED = ErrorKind(400, "invalid_request_error", "unsupported_parameter", logging.INFO)
INVALID_API_KEY = ErrorKind(401, "authentication_error", "invalid_api_key", logging.DEBUG)  # floods: quiet
PERMISSION = ErrorKind(403, "permission_error", "insufficient_permissions", logging.INFO)
# Keyvault's answer to a provider-key fetch no registered edge identity signed (shared/identity.py).
EDGE_IDENTITY_REFUSED = ErrorKind(403, "permission_error", "edge_identity_refused", logging.WARNING)
NOT_FOUND = ErrorKind(404, "not_found_error", "not_found", logging.INFO)
MODEL_NOT_FOUND = ErrorKind(404, "invalid_request_error", "model_not_found", logging.INFO)
METHOD_NOT_ALLOWED = ErrorKind(405, "invalid_request_error", "method_not_allowed", logging.INFO)
REQUEST_TIMEOUT = ErrorKind(408, "invalid_request_error", "request_timeout", logging.INFO)
CONFLICT = ErrorKind(409, "invalid_request_error", "conflict", logging.INFO)
TOO_LARGE = ErrorKind(413, "invalid_request_error", "request_too_large", logging.INFO)
UNPROCESSABLE = ErrorKind(422, "invalid_request_error", "invalid_value", logging.INFO)
RATE_LIMITED = ErrorKind(429, "rate_limit_error", "rate_limit_exceeded", logging.INFO)
BUDGET_EXCEEDED = ErrorKind(429, "insufficient_quota", "budget_exceeded", logging.INFO)
TOO_MANY_STREAMS = ErrorKind(429, "rate_limit_error", "too_many_concurrent_streams", logging.INFO)
INTERNAL = ErrorKind(500, "server_error", "internal_error", logging.ERROR)
NOT_IMPLEMENTED = ErrorKind(501, "api_error", "unsupported_provider", logging.INFO)
UPSTREAM = ErrorKind(502, "api_error", "upstream_error", logging.WARNING)
UNAVAILABLE = ErrorKind(503, "api_error", "service_unavailable", logging.WARNING)
NO_PROVIDER_KEY = ErrorKind(503, "api_error", "provider_key_missing", logging.WARNING)
LIMITS_UNAVAILABLE = ErrorKind(503, "api_error", "limits_unavailable", logging.WARNING)
PROVIDER_KEY_REFUSED = ErrorKind(503, "api_error", "provider_key_refused", logging.WARNING)
# A client's request on an edge keyvault does not trust: the deployment's fault, not the client's.
EDGE_UNTRUSTED = ErrorKind(503, "api_error", "edge_identity_refused", logging.ERROR)
UPSTREAM_TIMEOUT = ErrorKind(504, "api_error", "upstream_timeout", logging.WARNING)

# The one table from an HTTP status to the error a client gets (its type and default code), for
# the gateway's own errors and for a provider's that carry no type of their own.
_BY_STATUS: dict[int, ErrorKind] = {
    400: INVALID_REQUEST,
    401: INVALID_API_KEY,
    403: PERMISSION,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    408: REQUEST_TIMEOUT,
    409: CONFLICT,
    413: TOO_LARGE,
    422: UNPROCESSABLE,
    429: RATE_LIMITED,
}


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class GatewayError(Exception):
    """An error with everything needed to answer a client in OpenAI's shape."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        type: str | None = None,
    ) -> None:
        """``type`` (with ``status`` and ``code``) overrides the kind's: an error another
        service or an OpenAI-format provider answered keeps its own type."""
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else kind.code
        self.status = status if status is not None else kind.status
        self.kind = kind if type is None else ErrorKind(self.status, type, self.code, kind.log_level)
        self.headers = headers or {}
        self.upstream_status: int | None = None  # set when a provider answered with this error
        # Why an attempt failed without a provider's answer, for retries and fallbacks:
        # "timeout", "connect" (transport), "keys" (no usable provider key for the target).
        self.cause = ""

    @property
    def type(self) -> str:
        return self.kind.type

    def body(self) -> ErrorBody:
        return ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code)

    def envelope(self) -> dict[str, Any]:
        return {"error": self.body().model_dump()}

    def model_json(self) -> bytes:
        return ErrorEnvelope(error=self.body()).model_dump_json().encode()

    @classmethod
    def from_body(cls, status: int, body: ErrorBody) -> GatewayError:
        """Rebuild an error that crossed the bus (or came from an OpenAI-shaped upstream)."""
        kind = kind_for_status(status)
        return cls(kind, body.message, param=body.param, code=body.code, status=status, type=body.type or kind.type)


def kind_for_status(status: int) -> ErrorKind:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status == 504:
        return UPSTREAM_TIMEOUT
    if status == 503:
        return UNAVAILABLE
    if status >= 500:
        return UPSTREAM
    return INVALID_REQUEST


def upstream_status_to_client(status: int) -> int:
    """Which status the client sees for an upstream HTTP error status.

    Client errors the provider reports (bad parameter, bad key, rate limit, too large) are
    the client's to see as they are; a provider's own failures become 502, its overload 503,
    its timeouts 504.
    """
    if 400 <= status < 500:
        # The provider rejected *our* credential: for the client that is a gateway-side
        # configuration problem, not their key; still keep 401/403 so SDKs classify it.
        return status
    if status in (503, 529):
        return 503
    if status == 504:
        return 504
    return 502
