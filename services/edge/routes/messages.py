"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API,
for clients that speak it (the ``anthropic`` SDKs, Claude Code), with a Switchyard key in
``x-api-key`` or as a bearer token.

A model served by Anthropic (the provider or a named Anthropic account) is reached with the
client's own request, passed through (services/edge/providers/anthropic_passthrough.py): the
client's ``anthropic-version`` and ``anthropic-beta`` go along, the reply and the stream come
back as Anthropic sent them. Routing (fallbacks among Anthropic targets, retries, circuits),
limits and budgets, metering and telemetry are those of chat completions. Errors are in
Anthropic's shape (services/edge/errors.py). A model served by another provider is refused
with a 400 that says so: translating the Messages API to other providers is not built yet.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.edge import failover
from services.edge.auth import require_model
from services.edge.body import check_model
from services.edge.metered import RequestRecord
from services.edge.providers import anthropic_passthrough as passthrough
from services.edge.providers.base import Call, Completion, StreamMeter
from services.edge.routes.chat import (
    Opened,
    begin,
    bounded,
    failed,
    first_event,
    guarded,
    metered_stream,
    response_headers,
    settle,
    with_provider_keys,
)
from services.edge.state import Edge
from shared.catalog import Plan, Route, RouteTable
from shared.errors import INVALID_REQUEST, MISSING_PARAM, GatewayError

KEY_HEADER = "x-api-key"


def check_messages(body: dict[str, Any]) -> None:
    """What the gateway itself reads (model, max_tokens, stream); Anthropic checks the rest."""
    check_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(MISSING_PARAM, "messages: Field required (a non-empty array)", param="messages")
    limit = body.get("max_tokens")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise GatewayError(MISSING_PARAM, "max_tokens: Field required (a positive integer)", param="max_tokens")
    if body.get("stream") is not None and not isinstance(body.get("stream"), bool):
        raise GatewayError(INVALID_REQUEST, "stream: Input should be a valid boolean", param="stream")


def check_count(body: dict[str, Any]) -> None:
    check_model(body)
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise GatewayError(MISSING_PARAM, "messages: Field required (a non-empty array)", param="messages")


def _anthropic_plan(edge: Edge, record: RequestRecord) -> tuple[Plan, RouteTable]:
    """The model's plan, reduced to its Anthropic targets (a 400 when it has none)."""
    model = str(record.body["model"])
    plan = edge.routes.plan(model)
    require_model(record.principal, model, plan.model)
    table = edge.routes.current()
    targets = tuple(t for t in plan.targets if _api(table, t) == "anthropic")
    if not targets:
        served_by = ", ".join(sorted({t.provider for t in plan.targets}))
        raise GatewayError(
            INVALID_REQUEST,
            f"`{model}` is served by {served_by}; the Messages API reaches Anthropic models only for now. "
            "Call other providers' models through /v1/chat/completions.",
            param="model",
        )
    return dataclasses.replace(plan, targets=targets), table


def _api(table: RouteTable, route: Route) -> str:
    provider = table.providers.get(route.provider)
    return provider.api if provider is not None else ""


class _Passthrough:
    """The stream side of the pass-through, as chat's first-event wait calls an adapter."""

    def __init__(self, raw: bytes, version: str | None, beta: str | None) -> None:
        self.raw, self.version, self.beta = raw, version, beta

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        return await passthrough.stream(call, self.raw, self.version, self.beta, meter)


async def messages(request: Request) -> Response:
    edge, record, drop = await begin(request, "messages", check_messages, key_header=KEY_HEADER)
    version = request.headers.get(passthrough.VERSION_HEADER)
    beta = request.headers.get(passthrough.BETA_HEADER)
    stream = bool(record.body.get("stream"))
    plan = ticket = None
    try:
        plan, table = _anthropic_plan(edge, record)
        ticket = await edge.admission.admit(record.principal, plan, table, record.body)
        attempts = edge.telemetry.attempts(record, table)
        timeouts = plan.timeouts
        if stream:
            adapter = _Passthrough(record.raw_body, version, beta)

            async def open_stream(route: Route) -> tuple[Call, Opened]:
                return await first_event(edge, record, drop, route, adapter, timeouts)  # type: ignore[arg-type]

            call, opened = await failover.serve(plan, table, edge.health, open_stream, attempts)
            upstream_ms = (time.perf_counter() - opened.meter.started) * 1000
        else:

            async def create(route: Route) -> tuple[Call, Completion]:
                work = with_provider_keys(
                    edge, record, drop, route, lambda c: passthrough.create(c, record.raw_body, version, beta)
                )
                return await bounded(work, timeouts.total_seconds, route, "answer")

            call, completion = await failover.serve(plan, table, edge.health, create, attempts)
            upstream_ms = completion.upstream_ms
    except GatewayError as exc:
        failed(edge, record, exc, plan, ticket, stream=stream)
        raise
    if not stream:
        settle(edge, record, ticket, completion.usage)
        edge.telemetry.finish(record, record.event(status=200, usage=completion.usage, upstream_ms=upstream_ms), table)
        headers = response_headers(record, upstream_ms, call, plan, ticket)
        return Response(completion.body, media_type="application/json", headers=headers)
    headers = response_headers(record, upstream_ms, call, plan, ticket)
    headers["cache-control"] = "no-cache"
    events = guarded(opened, plan.timeouts, call.route.provider, passthrough.error_event)
    return StreamingResponse(
        metered_stream(events, opened.meter, record, edge, None, ticket),
        media_type="text/event-stream",
        headers=headers,
    )


async def count_tokens(request: Request) -> Response:
    """Counted by Anthropic for the model's Anthropic target; not metered (nothing is
    generated, and Anthropic does not bill it) and not held against limits."""
    edge, record, drop = await begin(request, "messages.count_tokens", check_count, key_header=KEY_HEADER)
    version = request.headers.get(passthrough.VERSION_HEADER)
    beta = request.headers.get(passthrough.BETA_HEADER)
    try:
        plan, table = _anthropic_plan(edge, record)
    except GatewayError as exc:
        edge.telemetry.close(record, exc.status)
        raise

    async def count(route: Route) -> tuple[Call, Completion]:
        work = with_provider_keys(
            edge, record, drop, route, lambda c: passthrough.count_tokens(c, record.raw_body, version, beta)
        )
        return await bounded(work, plan.timeouts.total_seconds, route, "answer")

    status = 500
    try:
        _, counted = await failover.serve(plan, table, edge.health, count, edge.telemetry.attempts(record, table))
        status = 200
    except GatewayError as exc:
        status = exc.status
        raise
    finally:
        edge.telemetry.close(record, status)
    return Response(counted.body, media_type="application/json")
