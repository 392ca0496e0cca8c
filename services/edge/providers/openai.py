"""OpenAI's chat wire API, for OpenAI and every OpenAI-compatible vendor (catalog data).

Pass-through: the request goes out as the client sent it (model name resolved), the reply
comes back byte for byte. Streams are relayed event by event; only what metering needs is
read from each chunk. The gateway always asks upstream for the usage chunk and hides it from
clients that did not ask for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.sse import DONE, events, frame
from services.edge.upstream import TRANSPORT_ERRORS, transport_error
from shared.errors import (
    UPSTREAM,
    GatewayError,
    kind_for_status,
    upstream_status_to_client,
)

log = logging.getLogger("switchyard.edge.openai")

_RELAYED_HEADERS = ("retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")


def openai_headers(call: Call) -> dict[str, str]:
    # The request id travels upstream too, so a provider's logs can be matched to ours.
    headers = {"content-type": "application/json", "accept": "application/json", "x-client-request-id": call.request_id}
    if call.credential is not None:
        cfg = call.provider
        value = f"{cfg.auth_scheme} {call.credential.secret}" if cfg.auth_scheme else call.credential.secret
        headers[cfg.auth_header] = value
    return headers


def _url(call: Call, path: str) -> str:
    return call.provider.base_url.rstrip("/") + path


def from_openai_error(status: int, raw: bytes, provider: str, headers: Mapping[str, str]) -> GatewayError:
    """An upstream error reply as the OpenAI-shaped error the client gets."""
    client_status = upstream_status_to_client(status)
    message = f"provider {provider!r} answered HTTP {status}"
    err_type, code, param = None, None, None
    try:
        body = json.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            err_type = err.get("type") if isinstance(err.get("type"), str) else None
            code = err.get("code") if isinstance(err.get("code"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    except (ValueError, AttributeError):
        pass
    kind = kind_for_status(client_status)
    relayed = {h: headers[h] for h in _RELAYED_HEADERS if h in headers}
    error = GatewayError(kind, message, param=param, code=code, status=client_status, headers=relayed)
    error.upstream_status = status
    if err_type and client_status < 500:
        error.kind = type(kind)(client_status, err_type, code, kind.log_level)
    return error


class OpenAIAdapter:
    def url(self, call: Call, path: str) -> str:
        return _url(call, path)

    def headers(self, call: Call) -> dict[str, str]:
        return openai_headers(call)

    def body(self, call: Call, **extra: Any) -> dict[str, Any]:
        return dict(call.body, model=call.route.upstream_model, **extra)

    async def chat(self, call: Call) -> Completion:
        return await self._post(call, "/chat/completions", self.body(call))

    async def embed(self, call: Call) -> Completion:
        return await self._post(call, "/embeddings", self.body(call))

    async def _post(self, call: Call, path: str, body: dict[str, Any]) -> Completion:
        started = time.perf_counter()
        try:
            async with call.http.post(self.url(call, path), data=json.dumps(body), headers=self.headers(call)) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, call.route.provider) from exc
        upstream_ms = (time.perf_counter() - started) * 1000
        if status != 200:
            raise from_openai_error(status, raw, call.route.provider, headers)
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
        try:
            resp = await call.http.post(
                self.url(call, "/chat/completions"), data=json.dumps(body), headers=self.headers(call)
            )
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, call.route.provider) from exc
        if resp.status != 200:
            try:
                raw = await resp.read()
            except TRANSPORT_ERRORS:
                raw = b""
            finally:
                resp.release()
            raise from_openai_error(resp.status, raw, call.route.provider, resp.headers)
        return self._relay(call, resp, meter)

    async def _relay(self, call: Call, resp: aiohttp.ClientResponse, meter: StreamMeter) -> AsyncIterator[bytes]:
        wants_usage = call.wants_usage_chunk
        saw_finish = False
        try:
            async for data in events(resp.content.iter_any()):
                if data == b"[DONE]":
                    meter.finished = True
                    yield DONE
                    return
                try:
                    chunk = json.loads(data)
                except ValueError:
                    meter.error_type = "upstream_bad_event"
                    yield _error_event("provider sent an event that is not JSON", "upstream_bad_event")
                    return
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk:
                    meter.error_type = "upstream_error"
                    yield frame(data)
                    return
                usage = Usage.from_openai(chunk.get("usage"))
                if usage is not None:
                    meter.usage = usage
                choices = chunk.get("choices")
                if isinstance(choices, list):
                    for choice in choices:
                        if not isinstance(choice, dict):
                            continue
                        delta = choice.get("delta")
                        if isinstance(delta, dict):
                            meter.saw_content(_delta_chars(delta))
                        if choice.get("finish_reason"):
                            saw_finish = True
                    if usage is not None and not choices and not wants_usage:
                        continue  # the usage chunk we asked for on the gateway's behalf
                yield frame(data)
        except TRANSPORT_ERRORS as exc:
            err = transport_error(exc, call.route.provider)
            meter.error_type = "upstream_disconnected"
            yield _error_event(f"stream from provider interrupted: {err.message}", "upstream_disconnected")
            return
        except ValueError as exc:
            meter.error_type = "upstream_bad_event"
            yield _error_event(str(exc), "upstream_bad_event")
            return
        finally:
            meter.upstream_done_at = time.perf_counter()
            if meter.finished:
                resp.release()  # back to the pool
            else:
                resp.close()  # cut the connection: the provider stops generating
        if saw_finish:
            # Some compatible servers end without [DONE]; the stream did finish.
            meter.finished = True
            yield DONE
        else:
            meter.error_type = "upstream_truncated"
            yield _error_event("stream from provider ended before it finished", "upstream_truncated")


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


def _error_event(message: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    return frame(json.dumps(payload).encode())


class AzureAdapter(OpenAIAdapter):
    """Azure OpenAI: OpenAI's wire format at deployment URLs. The model name is the
    deployment; the key goes in ``api-key``; ``api-version`` is catalog data."""

    def url(self, call: Call, path: str) -> str:
        base = call.provider.base_url.rstrip("/")
        version = call.provider.api_version or "2024-10-21"
        return f"{base}/openai/deployments/{call.route.upstream_model}{path}?api-version={version}"

    def body(self, call: Call, **extra: Any) -> dict[str, Any]:
        body = dict(call.body, **extra)
        body.pop("model", None)  # the deployment in the URL names the model
        return body
