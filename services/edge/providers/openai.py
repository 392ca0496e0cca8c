"""OpenAI's chat wire API, for OpenAI and every OpenAI-compatible vendor (catalog data).

Pass-through: the request goes out as the client sent it (model name resolved), the reply
comes back byte for byte. Streams are relayed event by event through the shared relay (the
same transport-error seam and stream endings as every provider); only what metering needs is
read from each chunk. The gateway always asks upstream for the usage chunk and hides it from
clients that did not ask for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import TypeAdapter

from services.edge.providers import common
from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.providers.wire import ErrorMapper, open_stream, post_json, relay
from services.edge.sse import DONE, frame
from shared.errors import (
    UPSTREAM,
    GatewayError,
)

log = logging.getLogger("switchyard.edge.openai")


def openai_headers(call: Call) -> dict[str, str]:
    # The request id travels upstream too, so a provider's logs can be matched to ours.
    return common.json_headers(call)


def _url(call: Call, path: str) -> str:
    return call.provider.base_url.rstrip("/") + path


def from_openai_error(status: int, raw: bytes, provider: str, headers: Mapping[str, str]) -> GatewayError:
    """An upstream error reply as the OpenAI-shaped error the client gets: OpenAI's own error
    object, relayed as the provider wrote it."""
    message, err_type, code, param = "", "", None, None
    try:
        body = json.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            err_type = str(err["type"]) if isinstance(err.get("type"), str) else ""
            code = err.get("code") if isinstance(err.get("code"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    except (ValueError, AttributeError):
        pass
    return common.provider_error(status, message, provider, headers, code=code, param=param, openai_type=err_type)


class OpenAIAdapter:
    def url(self, call: Call, path: str) -> str:
        return _url(call, path)

    def headers(self, call: Call) -> dict[str, str]:
        return openai_headers(call)

    def body(self, call: Call, **extra: Any) -> dict[str, Any]:
        return dict(call.body, model=call.route.upstream_model, **extra)

    def sent(self, call: Call) -> dict[str, Any] | bytes:
        """A chat call's body: the client's own bytes where they are what the provider gets
        (the model's name unchanged, nothing taken out), else the body rebuilt."""
        if call.raw and call.body.get("model") == call.route.upstream_model:
            return call.raw
        return self.body(call)

    async def chat(self, call: Call) -> Completion:
        return await self._post(call, "/chat/completions", self.sent(call))

    async def embed(self, call: Call) -> Completion:
        return await self._post(call, "/embeddings", self.body(call))

    async def _post(self, call: Call, path: str, body: dict[str, Any] | bytes) -> Completion:
        raw, upstream_ms = await post_json(call, self.url(call, path), body, self.headers(call), _on_error(call))
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise GatewayError(UPSTREAM, f"provider {call.route.provider!r} sent a reply that is not JSON") from exc
        usage = Usage.from_openai(parsed.get("usage") if isinstance(parsed, dict) else None)
        return Completion(body=raw, usage=usage or Usage(estimated=True), upstream_ms=upstream_ms)

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        body = self.body(call, stream=True)
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
        resp = await open_stream(call, self.url(call, "/chat/completions"), body, self.headers(call), _on_error(call))
        return relay(call, resp, Chunks(meter, call.wants_usage_chunk), meter)


def _on_error(call: Call) -> ErrorMapper:
    provider = call.route.provider
    return lambda status, raw, headers: from_openai_error(status, raw, provider, headers)


class Chunks:
    """OpenAI's chunks, relayed as they came (the shared relay, services/edge/providers/wire.py,
    decides how a stream ends), while the meter reads the usage and the content's size. The
    usage chunk the gateway asked for on its own behalf is kept from clients that did not ask."""

    schema: TypeAdapter[Any] | None = None  # read defensively: any chunk shape is relayed

    def __init__(self, meter: StreamMeter, wants_usage: bool) -> None:
        self.meter = meter
        self.wants_usage = wants_usage
        self.finished = False
        self.saw_finish = False
        self.failed = False

    def feed(self, chunk: dict[str, Any], data: bytes) -> list[bytes]:
        if "error" in chunk:  # the provider's own error event: relayed as it came, and the end
            self.meter.error_type = "upstream_error"
            self.failed = self.finished = True
            return [frame(data)]
        usage = Usage.from_openai(chunk.get("usage"))
        if usage is not None:
            self.meter.usage = usage
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    self.meter.saw_content(_delta_chars(delta))
                if choice.get("finish_reason"):
                    self.saw_finish = True
            if usage is not None and not choices and not self.wants_usage:
                return []  # the usage chunk asked for on the gateway's behalf
        return [frame(data)]

    def eof(self) -> None:
        # Some compatible servers end without [DONE]; a stream with its finish reason did finish.
        self.finished = self.saw_finish

    def close(self) -> list[bytes]:
        return [] if self.failed else [DONE]


def _delta_chars(delta: dict[str, Any]) -> int:
    n = 0
    for key in ("content", "reasoning_content", "refusal"):
        value = delta.get(key)
        if isinstance(value, str):
            n += len(value)
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        for tc in calls:
            fn = tc.get("function") if isinstance(tc, dict) else None
            if isinstance(fn, dict):
                for key in ("name", "arguments"):
                    if isinstance(fn.get(key), str):
                        n += len(fn[key])
    return n


class AzureAdapter(OpenAIAdapter):
    """Azure OpenAI: OpenAI's wire format at deployment URLs. The model name is the
    deployment; the key goes in ``api-key``; ``api-version`` is catalog data."""

    def url(self, call: Call, path: str) -> str:
        base = call.provider.base_url.rstrip("/")
        version = call.provider.api_version or "2024-10-21"
        deployment = common.path_segment(call.route.upstream_model)
        return f"{base}/openai/deployments/{deployment}{path}?api-version={quote(version, safe='')}"

    def sent(self, call: Call) -> dict[str, Any] | bytes:
        return self.body(call)  # without the model: the deployment in the URL names it

    def body(self, call: Call, **extra: Any) -> dict[str, Any]:
        body = dict(call.body, **extra)
        body.pop("model", None)  # the deployment in the URL names the model
        return body
