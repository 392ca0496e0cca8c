"""OpenAI's Responses API passed through: a ``POST /v1/responses`` for OpenAI's own models
goes to OpenAI's ``/v1/responses`` as the client sent it (re-serialised only when the target's
model name differs), and the reply and every stream event come back as OpenAI sent them, so
OpenAI's encrypted reasoning and its own stored state work unchanged. The gateway only reads
them: the usage for metering, and whether a stream ended as it should. A failure the gateway
itself sees in a stream (the connection cut, a stall) ends it with the Responses API's
``error`` event. ``GET``/``DELETE`` of a stored response and its input items are forwarded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import TypeAdapter

from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.providers.common import parse_json_reply
from services.edge.providers.openai import from_openai_error, openai_headers
from services.edge.providers.wire import open_stream, post_json, relay
from services.edge.upstream import TRANSPORT_ERRORS, transport_error
from shared.errors import UPSTREAM, GatewayError


def usage_of(usage: Any) -> Usage:
    """A Responses API usage object as the gateway meters it."""
    if not isinstance(usage, dict):
        return Usage(estimated=True)
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    thought = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=int(cached),
        reasoning_tokens=int(thought),
    )


def error_event(message: str, code: str, err_type: str = "api_error") -> bytes:
    """A stream's end by error, as the Responses API sends one."""
    data = json.dumps({"type": "error", "code": code, "message": message, "param": None})
    return f"event: error\ndata: {data}\n\n".encode()


class PassThroughStream:
    """OpenAI's Responses events, relayed as they came, while the meter reads them."""

    schema: TypeAdapter[Any] | None = None  # read defensively: any event shape is relayed

    def __init__(self, meter: StreamMeter) -> None:
        self.meter = meter
        self.finished = False
        self.response_id = ""

    def feed(self, event: dict[str, Any], data: bytes) -> list[bytes]:
        kind = str(event.get("type") or "")
        if kind == "response.created":
            response = event.get("response")
            if isinstance(response, dict):
                self.response_id = str(response.get("id") or "")
        elif kind.endswith(".delta"):
            delta = event.get("delta")
            self.meter.saw_content(len(delta) if isinstance(delta, str) else 0)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
            if usage is not None:
                self.meter.usage = usage_of(usage)
            self.finished = True
            if kind == "response.failed":
                # OpenAI's own end of a failed response, relayed as it came: metered as failed.
                self.meter.error_type = "upstream_error"
        elif kind == "error":
            message = str(event.get("message") or "the provider ended the stream with an error")
            raise GatewayError(UPSTREAM, message, code=str(event.get("code") or "upstream_error"))
        return [f"event: {kind}\n".encode() + b"data: " + data + b"\n\n"]

    def eof(self) -> None:
        pass

    def close(self) -> list[bytes]:
        return []


def _body(call: Call, raw: bytes) -> bytes:
    if call.body.get("model") == call.route.upstream_model:
        return raw
    return json.dumps({**call.body, "model": call.route.upstream_model}).encode()


def _url(call: Call, path: str = "") -> str:
    return call.provider.base_url.rstrip("/") + "/responses" + path


def _on_error(call: Call) -> Any:
    provider = call.route.provider
    return lambda status, raw, headers: from_openai_error(status, raw, provider, headers)


async def create(call: Call, raw: bytes) -> Completion:
    body, upstream_ms = await post_json(call, _url(call), _body(call, raw), openai_headers(call), _on_error(call))
    usage = usage_of(parse_json_reply(body, call.route.provider).get("usage"))  # any shape: estimated
    return Completion(body=body, usage=usage, upstream_ms=upstream_ms)


async def stream(call: Call, raw: bytes, meter: StreamMeter) -> AsyncIterator[bytes]:
    resp = await open_stream(call, _url(call), _body(call, raw), openai_headers(call), _on_error(call))
    return relay(call, resp, PassThroughStream(meter), meter, error_event)


async def forward(call: Call, method: str, path: str, query: str) -> bytes:
    """``GET``/``DELETE`` of a response OpenAI keeps (``path`` after ``/responses``): its reply,
    or its error as the client's."""
    url = _url(call, path) + (f"?{query}" if query else "")
    try:
        async with call.http.request(method, url, headers=openai_headers(call)) as resp:
            raw = await resp.read()
            status, headers = resp.status, resp.headers
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, call.route.provider) from exc
    if status != 200:
        raise from_openai_error(status, raw, call.route.provider, headers)
    return raw
