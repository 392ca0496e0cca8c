"""Every error the edge answers, in the caller's API shape (OpenAI's; Anthropic's on the
Messages API), logged at the table's level."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.edge.providers import anthropic_passthrough
from shared.errors import (
    INTERNAL,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    GatewayError,
    kind_for_status,
)

log = logging.getLogger("switchyard.edge.errors")


# The Messages API's paths (also under /ai): their clients are Anthropic SDKs.
MESSAGES_PATHS = ("/v1/messages", "/v1/messages/count_tokens")


def _respond(err: GatewayError, request: Request) -> JSONResponse:
    if request.url.path.rstrip("/").endswith(MESSAGES_PATHS):
        body = anthropic_passthrough.envelope(err.message, anthropic_passthrough.error_type(err.status, err.code))
        return JSONResponse(body, status_code=err.status, headers=err.headers)
    return JSONResponse(err.envelope(), status_code=err.status, headers=err.headers)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    log.log(exc.kind.log_level, "%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
    return _respond(exc, request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    param = ".".join(loc) or None
    err = GatewayError(INVALID_REQUEST, f"{param or 'request'}: {first.get('msg', 'invalid')}", param=param)
    return _respond(err, request)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err = GatewayError(NOT_FOUND, f"Unknown request URL: {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        err = GatewayError(METHOD_NOT_ALLOWED, f"Method {request.method} is not allowed on {request.url.path}.")
    else:
        err = GatewayError(kind_for_status(exc.status_code), str(exc.detail), status=exc.status_code)
    return _respond(err, request)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _respond(GatewayError(INTERNAL, "The gateway hit an internal error; it has been logged."), request)


async def respond_to(request: Request, exc: Exception) -> JSONResponse:
    """The error reply to ``exc``, as the handlers ``install`` registers give it (for a route
    served outside the framework's routing: services/edge/hot.py)."""
    if isinstance(exc, GatewayError):
        return await _gateway_error(request, exc)
    return await _unexpected(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
