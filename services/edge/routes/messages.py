"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API,
for clients that speak it (the ``anthropic`` SDKs, Claude Code), with a Switchyard key in
``x-api-key`` or as a bearer token.

A model served by Anthropic (the provider or a named Anthropic account) is reached with the
client's own request, passed through (services/edge/providers/anthropic_passthrough.py): the
client's ``anthropic-version`` and ``anthropic-beta`` go along, the reply and the stream come
back as Anthropic sent them. Routing (fallbacks among Anthropic targets, retries, circuits),
limits and budgets, metering and telemetry are those of chat completions. Errors are in
Anthropic's shape (services/edge/errors.py).

A model served by another provider (or a virtual model whose targets mix Anthropic with
others) is translated instead (services/edge/messages): the request into chat completions,
served by chat's machinery and adapters, and the answer back into a message or Anthropic's
stream events, with ``stop_reason: "tool_use"`` whenever a tool is called.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.edge import failover
from services.edge.auth import require_model
from services.edge.body import check_model
from services.edge.messages import blocks, from_chat, to_chat
from services.edge.metered import RequestRecord
from services.edge.providers import anthropic_passthrough as passthrough
from services.edge.providers.base import Call, Completion, StreamMeter, estimate_tokens, prompt_chars
from services.edge.routes.chat import (
    Opened,
    admit,
    attempt,
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
ESTIMATED_HEADER = "x-switchyard-estimated"


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


def _plan(edge: Edge, record: RequestRecord) -> tuple[Plan, RouteTable]:
    model = str(record.body["model"])
    plan = edge.routes.plan(model)
    require_model(record.principal, plan)
    return plan, edge.routes.current()


def _all_anthropic(plan: Plan, table: RouteTable) -> bool:
    """Whether every target speaks Anthropic's API: the request is then passed through."""
    return all(_api(table, t) == "anthropic" for t in plan.targets)


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
    stream = bool(record.body.get("stream"))
    try:
        plan, table = _plan(edge, record)
    except GatewayError as exc:
        failed(edge, record, exc, None, None, stream=stream)
        raise
    if _all_anthropic(plan, table):
        return await _passed_through(request, edge, record, drop, plan, table, stream)
    return await _translated(edge, record, drop, plan, table, stream)


async def _passed_through(
    request: Request, edge: Edge, record: RequestRecord, drop: bool, plan: Plan, table: RouteTable, stream: bool
) -> Response:
    version = request.headers.get(passthrough.VERSION_HEADER)
    beta = request.headers.get(passthrough.BETA_HEADER)
    ticket = None
    try:
        ticket = await admit(edge, record, plan, table, record.body)
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


async def _translated(
    edge: Edge, record: RequestRecord, drop: bool, plan: Plan, table: RouteTable, stream: bool
) -> Response:
    """A model served by another provider (or a plan that mixes Anthropic with others): the
    request is translated to chat completions, served by chat's machinery, and its answer
    translated back into a message or Anthropic's stream events."""
    ticket = None
    try:
        req = blocks.parse_request(record.body)
        record.body = to_chat.chat_body(req)
        ticket = await admit(edge, record, plan, table, record.body)
        call, served, upstream_ms = await attempt(edge, record, drop, plan, table, stream=stream)
    except GatewayError as exc:
        failed(edge, record, exc, plan, ticket, stream=stream)
        raise
    if isinstance(served, Completion):
        settle(edge, record, ticket, served.usage)
        edge.telemetry.note_output(record, served.body)
        edge.telemetry.finish(record, record.event(status=200, usage=served.usage, upstream_ms=upstream_ms), table)
        headers = response_headers(record, upstream_ms, call, plan, ticket)
        return JSONResponse(from_chat.message(req, json.loads(served.body)), headers=headers)
    headers = response_headers(record, upstream_ms, call, plan, ticket)
    headers["cache-control"] = "no-cache"
    estimate = served.meter.prompt_tokens or estimate_tokens(prompt_chars(record.body))
    translator = from_chat.StreamTranslator(req, estimate)
    events = translator.translate(guarded(served, plan.timeouts, call.route.provider))
    return StreamingResponse(
        metered_stream(events, served.meter, record, edge, None, ticket),
        media_type="text/event-stream",
        headers=headers,
    )


async def count_tokens(request: Request) -> Response:
    """Counted by Anthropic for a model whose targets are Anthropic's; estimated for other
    providers' models (as the gateway estimates prompts for limits: about four characters a
    token), with ``x-switchyard-estimated: true``. Not metered (nothing is generated, and
    Anthropic does not bill it), and held against limits as a request with no tokens: one of
    each ``rpm`` and a ``max_parallel`` slot (each count is an upstream call with the
    operator's key)."""
    edge, record, drop = await begin(request, "messages.count_tokens", check_count, key_header=KEY_HEADER)
    version = request.headers.get(passthrough.VERSION_HEADER)
    beta = request.headers.get(passthrough.BETA_HEADER)
    status, ticket = 500, None
    try:
        plan, table = _plan(edge, record)
        ticket = await edge.admission.admit(record.principal, plan, table, record.body, consumes="request")
        if not _all_anthropic(plan, table):
            body = to_chat.chat_body(blocks.parse_request({**record.body, "max_tokens": 1}))
            chars = prompt_chars(body) + len(json.dumps(body.get("tools") or []))
            status = 200
            headers = {ESTIMATED_HEADER: "true", **ticket.headers()}
            return JSONResponse({"input_tokens": estimate_tokens(chars)}, headers=headers)

        async def count(route: Route) -> tuple[Call, Completion]:
            work = with_provider_keys(
                edge, record, drop, route, lambda c: passthrough.count_tokens(c, record.raw_body, version, beta)
            )
            return await bounded(work, plan.timeouts.total_seconds, route, "answer")

        _, counted = await failover.serve(plan, table, edge.health, count, edge.telemetry.attempts(record, table))
        status = 200
    except GatewayError as exc:
        status = exc.status
        raise
    finally:
        if ticket is not None:
            ticket.settle(0, 0.0)
        edge.telemetry.close(record, status)
    return Response(counted.body, media_type="application/json", headers=ticket.headers() if ticket else None)
