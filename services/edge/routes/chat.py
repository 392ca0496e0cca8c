"""``POST /v1/chat/completions``: auth, route, adapter, respond, meter.

The hot path. It is a plain Starlette endpoint (FastAPI's dependency solving cost more than
the rest of the handler, see docs/performance.md); everything it needs is in process memory,
and its only network call is the upstream one.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.edge.auth import require_model
from services.edge.body import check_chat, read_json
from services.edge.metered import RequestRecord
from services.edge.providers.base import Call, Credential, StreamMeter
from services.edge.state import Edge
from shared.catalog import Route
from shared.errors import INVALID_REQUEST, GatewayError

OVERHEAD_HEADER = "x-switchyard-overhead-ms"
DROP_PARAMS_HEADER = "x-switchyard-drop-params"
DROPPED_HEADER = "x-switchyard-dropped-params"


async def begin(
    request: Request, endpoint: str, check: Callable[[dict[str, Any]], None]
) -> tuple[Edge, RequestRecord, bool]:
    """What every model endpoint does first: authenticate, read and check the body, take
    the drop-params opt-in out of it, and open the request's usage record."""
    edge: Edge = request.app.state.edge
    principal = edge.client_keys.authenticate(request.headers.get("authorization"), request.headers.get("api-key"))
    body = await read_json(request, edge.settings.max_body_bytes)
    drop = drop_params(request, body)
    check(body)
    record = RequestRecord(
        request_id="req_" + os.urandom(16).hex(),
        principal=principal,
        endpoint=endpoint,
        body=body,
        instance=edge.instance,
    )
    return edge, record, drop


async def chat_completions(request: Request) -> Response:
    edge, record, drop = await begin(request, "chat.completions", check_chat)
    body, principal = record.body, record.principal
    stream = bool(body.get("stream"))
    meter = StreamMeter()
    try:
        record.route = edge.routes.resolve(body["model"])
        require_model(principal, body["model"], record.route.model)
        provider = edge.routes.current().providers[record.route.provider]
        adapter = edge.registry.get(provider.api, record.route.provider)
        if stream:
            call, events = await with_provider_keys(edge, record, drop, lambda c: adapter.stream(c, meter))
            upstream_ms = (time.perf_counter() - meter.started) * 1000  # until the provider answered
        else:
            call, completion = await with_provider_keys(edge, record, drop, adapter.chat)
            upstream_ms = completion.upstream_ms
    except GatewayError as exc:
        edge.usage.submit(record.event(status=exc.status, error_type=exc.type, stream=stream))
        exc.headers["x-request-id"] = record.request_id
        raise
    headers = response_headers(record, upstream_ms, call)
    if not stream:
        edge.usage.submit(record.event(status=200, usage=completion.usage, upstream_ms=upstream_ms))
        return Response(completion.body, media_type="application/json", headers=headers)
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"
    return StreamingResponse(_metered(events, meter, record, edge), media_type="text/event-stream", headers=headers)


T = TypeVar("T")


async def with_provider_keys(
    edge: Edge, record: RequestRecord, drop: bool, attempt: Callable[[Call], Awaitable[T]]
) -> tuple[Call, T]:
    """Run ``attempt`` with a provider key, once per key while the provider refuses keys."""
    assert record.route is not None
    route = record.route
    provider = edge.routes.current().providers[route.provider]
    tried: frozenset[str] = frozenset()
    while True:
        pick = edge.credentials.pick if provider.requires_key else edge.credentials.optional
        credential = pick(route.provider, route.upstream_model, tried)
        record.provider_key_id = credential.key_id if credential else ""
        call = Call(route, provider, credential, record.body, record.request_id, edge.http, drop, media=edge.media)
        try:
            return call, await attempt(call)
        except GatewayError as exc:
            if credential is None or not _key_refused(edge, route, credential, exc):
                raise
            tried |= {credential.key_id}
            if not edge.credentials.has_other(route.provider, route.upstream_model, tried):
                raise


def drop_params(request: Request, body: dict[str, Any]) -> bool:
    """Whether the client opted into dropping what the provider cannot honour: the header
    ``x-switchyard-drop-params: true`` or ``"drop_params": true`` in the body (taken out)."""
    flag = body.pop("drop_params", None)
    if flag is not None and not isinstance(flag, bool):
        raise GatewayError(INVALID_REQUEST, "'drop_params' must be a boolean.", param="drop_params")
    header = request.headers.get(DROP_PARAMS_HEADER, "").strip().lower()
    return flag is True or header in ("true", "1", "yes")


def response_headers(record: RequestRecord, upstream_ms: float, call: Call) -> dict[str, str]:
    overhead = (time.perf_counter() - record.started) * 1000 - upstream_ms
    headers = {"x-request-id": record.request_id, OVERHEAD_HEADER: f"{max(overhead, 0.0):.3f}"}
    if call.dropped:
        headers[DROPPED_HEADER] = ",".join(call.dropped)
    return headers


def _key_refused(edge: Edge, route: Route, credential: Credential, exc: GatewayError) -> bool:
    """Whether the provider refused this key (not the request): 429 cools it down, 401/403
    take it out of service. Either way another key may do."""
    if exc.upstream_status == 429:
        edge.credentials.cool_down(credential, route.upstream_model, exc.headers.get("retry-after"))
        return True
    if exc.upstream_status in (401, 403):
        edge.credentials.mark_invalid(route.provider, credential, f"HTTP {exc.upstream_status}: {exc.message[:200]}")
        return True
    return False


async def _metered(
    events: AsyncIterator[bytes], meter: StreamMeter, record: RequestRecord, edge: Edge
) -> AsyncIterator[bytes]:
    """Relay events; whatever happens (finish, upstream error, client gone), meter once."""
    status, error_type = 200, ""
    try:
        async for event in events:
            yield event
        if not meter.finished:
            status, error_type = 502, meter.error_type or "upstream_error"
    except BaseException:  # the client went away (cancellation) or the relay broke
        status, error_type = 499, "client_disconnected"
        raise
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()  # closes the upstream response: the provider stops generating
        ttft = ((meter.first_chunk_at or meter.started) - meter.started) * 1000
        upstream_end = meter.upstream_done_at or time.perf_counter()
        edge.usage.submit(
            record.event(
                status=status,
                usage=meter.final_usage(record.body),
                error_type=error_type,
                stream=True,
                ttft_ms=ttft,
                upstream_ms=(upstream_end - meter.started) * 1000,
            )
        )
