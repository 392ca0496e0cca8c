"""Anthropic's Messages API passed through: a ``POST /v1/messages`` (or ``count_tokens``) of a
client that speaks it, to an Anthropic target.

The client's body goes upstream as the client sent it (re-serialised only when the target's
model name differs from the one asked for); the reply and every stream event come back as
Anthropic sent them, thinking signatures and all. The gateway only reads them: the usage for
metering, and whether a stream ended as it should. A failure the gateway itself sees in a
stream (the connection cut, a stream that stops early) ends it with an Anthropic ``error``
event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import TypeAdapter

from services.edge.providers import anthropic_replies
from services.edge.providers.anthropic import API_VERSION, error_from, usage_of
from services.edge.providers.base import Call, Completion, StreamMeter
from services.edge.providers.common import json_headers, parse_json_reply
from services.edge.providers.wire import open_stream, post_json, read_reply, relay
from shared.errors import UPSTREAM, GatewayError

# The request headers of the client that reach Anthropic (besides the body): the API version
# it speaks, and the betas it opted into.
VERSION_HEADER = "anthropic-version"
BETA_HEADER = "anthropic-beta"

# Anthropic's error types, by the status the client gets.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_type(status: int, code: str | None) -> str:
    """The Anthropic error type for an error the gateway answers with ``status``."""
    if code == "overloaded":
        return "overloaded_error"
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def envelope(message: str, err_type: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": err_type, "message": message}}


def error_event(message: str, code: str, err_type: str = "api_error") -> bytes:
    """A stream's end by error, as Anthropic sends one (``code`` is the gateway's own)."""
    data = json.dumps(envelope(message, "overloaded_error" if code == "overloaded" else "api_error"))
    return f"event: error\ndata: {data}\n\n".encode()


class PassThroughStream:
    """Anthropic's events, relayed as they came, while the meter reads the usage."""

    schema: TypeAdapter[Any] | None = anthropic_replies.EVENT  # each event is checked before feed()

    def __init__(self, meter: StreamMeter) -> None:
        self.meter = meter
        self.finished = False
        self._input: dict[str, Any] = {}
        self._output: dict[str, Any] = {}

    def feed(self, event: dict[str, Any], data: bytes) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._input = usage
                self.meter.prompt_tokens = usage_of(usage).prompt_tokens
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            text = delta.get("text") or delta.get("thinking") or delta.get("partial_json") or ""
            self.meter.saw_content(len(text))
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            self._output = event["usage"]
        elif kind == "message_stop":
            self.finished = True
            self.meter.usage = usage_of({**self._input, **self._output})
        elif kind == "error":  # the provider ended the stream: its error, in its own shape
            found = event.get("error")
            error: dict[str, Any] = found if isinstance(found, dict) else {}
            overloaded = error.get("type") == "overloaded_error"
            message = str(error.get("message") or "the provider ended the stream with an error")
            raise GatewayError(UPSTREAM, message, code="overloaded" if overloaded else "upstream_error")
        return [f"event: {kind}\n".encode() + b"data: " + data + b"\n\n"]

    def eof(self) -> None:
        pass

    def close(self) -> list[bytes]:
        return []


def _headers(call: Call, version: str | None, beta: str | None) -> dict[str, str]:
    extra = {VERSION_HEADER: version or call.provider.api_version or API_VERSION}
    if beta:
        extra[BETA_HEADER] = beta
    return json_headers(call, **extra)


def _body(call: Call, raw: bytes) -> bytes:
    if call.body.get("model") == call.route.upstream_model:
        return raw
    return json.dumps({**call.body, "model": call.route.upstream_model}).encode()


def _url(call: Call, path: str = "") -> str:
    return call.provider.base_url.rstrip("/") + "/v1/messages" + path


def _on_error(call: Call) -> Any:
    provider = call.route.provider
    return lambda status, raw, headers: error_from(status, raw, provider, headers)


async def create(call: Call, raw: bytes, version: str | None, beta: str | None) -> Completion:
    body, upstream_ms = await post_json(
        call, _url(call), _body(call, raw), _headers(call, version, beta), _on_error(call)
    )
    reply = parse_json_reply(body, call.route.provider)
    usage = read_reply(call.route.provider, anthropic_replies.REPLY, reply, lambda: usage_of(reply["usage"]))
    return Completion(body=body, usage=usage, upstream_ms=upstream_ms)


async def stream(
    call: Call, raw: bytes, version: str | None, beta: str | None, meter: StreamMeter
) -> AsyncIterator[bytes]:
    resp = await open_stream(call, _url(call), _body(call, raw), _headers(call, version, beta), _on_error(call))
    return relay(call, resp, PassThroughStream(meter), meter, error_event)


async def count_tokens(call: Call, raw: bytes, version: str | None, beta: str | None) -> Completion:
    body, upstream_ms = await post_json(
        call, _url(call, "/count_tokens"), _body(call, raw), _headers(call, version, beta), _on_error(call)
    )
    return Completion(body=body, usage=usage_of({}), upstream_ms=upstream_ms)
