"""The Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items`` (also under ``/ai/v1``).

For a model whose targets are all OpenAI's own, the request is passed through to OpenAI's
Responses API (services/edge/providers/openai_responses.py), which keeps its own state; the
gateway keeps only where each stored response is, so ``GET``, ``DELETE`` and the next turn
find it from any edge.

For every other model (and for a conversation the gateway keeps), the request is checked into
typed items (services/edge/responses/items.py), joined to the conversation it continues
(``previous_response_id``, from the shared store), translated to a chat completions request
and served by the chat machinery: routing, fallbacks, limits and budgets, metering and
telemetry are chat's, and every provider is reached through its chat adapter. The answer
comes back as a response object, or as the Responses API's typed events. A response with
``store`` (the default) is kept before the client is told it is complete, so the next turn
works on any edge at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.edge import failover
from services.edge.auth import Principal, require_model
from services.edge.body import check_responses
from services.edge.metered import RequestRecord
from services.edge.providers import openai_responses as passthrough
from services.edge.providers.base import Call, Completion, StreamMeter
from services.edge.responses.from_chat import Draft, StreamTranslator, from_completion, new_id
from services.edge.responses.items import ResponsesRequest, parse_items, parse_request
from services.edge.responses.store import StoredResponse
from services.edge.responses.to_chat import chat_body
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
from services.edge.sse import json_data
from services.edge.state import Edge
from shared.catalog import Plan, Route, RouteTable
from shared.errors import INVALID_REQUEST, NOT_FOUND, TOO_LARGE, GatewayError

log = logging.getLogger("switchyard.edge.responses")

STORED_HEADER = "x-switchyard-stored"
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


async def create(request: Request) -> Response:
    edge, record, drop = await begin(request, "responses", check_responses)
    principal = record.principal
    stream = record.body.get("stream") is True
    try:
        req = parse_request(record.body)
        previous = None
        if req.previous_response_id:
            previous = await edge.responses.previous(req.previous_response_id, reader(principal))
        plan = edge.routes.plan(req.model)
        require_model(principal, plan)
        table = edge.routes.current()
        openai_plan = _openai_plan(plan, table, previous.held_by if previous else None)
    except GatewayError as exc:
        failed(edge, record, exc, None, None, stream=stream)
        raise
    if openai_plan is not None:
        return await _passed_through(edge, record, drop, req, openai_plan, table, stream)
    return await _translated(edge, record, drop, req, previous, plan, table, stream)


def _openai_plan(plan: Plan, table: RouteTable, held_by: str | None) -> Plan | None:
    """The plan to pass through to OpenAI's own Responses API: when every target is OpenAI's
    (a response OpenAI keeps is continued where it is kept); None to translate."""

    def openai(route: Route) -> bool:
        provider = table.providers.get(route.provider)
        return route.billed_provider == "openai" and provider is not None and provider.api == "openai"

    if held_by is None:
        return plan if all(openai(t) for t in plan.targets) else None
    if held_by == "":
        return None  # a conversation the gateway keeps: translated, OpenAI targets included
    targets = tuple(t for t in plan.targets if t.provider == held_by and openai(t))
    if not targets:
        raise GatewayError(
            INVALID_REQUEST,
            f"previous_response_id names a response that OpenAI keeps (through {held_by!r}); continue it with "
            f"a model served there, or pass the conversation as input.",
            param="previous_response_id",
        )
    return dataclasses.replace(plan, targets=targets)


async def _translated(
    edge: Edge,
    record: RequestRecord,
    drop: bool,
    req: ResponsesRequest,
    previous: StoredResponse | None,
    plan: Plan,
    table: RouteTable,
    stream: bool,
) -> Response:
    principal = record.principal
    ticket = None
    try:
        chain: list[str] = []
        context = []
        if previous is not None and req.previous_response_id:
            chain, earlier = await edge.responses.conversation(previous, req.previous_response_id, reader(principal))
            context = parse_items(earlier)
        turn = _with_ids([item.model_dump(exclude_none=True, by_alias=True) for item in req.input_items()])
        if req.store and len(json.dumps(turn)) > edge.responses.room():
            raise GatewayError(
                TOO_LARGE, "This input is more than the response store keeps; send store: false.", param="input"
            )
        record.body = chat_body(req, context)
        draft = Draft(req)
        ticket = await admit(edge, record, plan, table, record.body)
        call, served, upstream_ms = await attempt(edge, record, drop, plan, table, stream=stream)
    except GatewayError as exc:
        failed(edge, record, exc, plan, ticket, stream=stream)
        raise
    owner = principal.user

    async def keep(done: Draft) -> bool:
        if not req.store:
            return True
        entry = StoredResponse(owner=owner, response=done.body(public=False), input=turn, chain=chain)
        try:
            await edge.responses.put(done.id, entry)
        except GatewayError as exc:
            log.warning("response %s was answered but not stored: %s", done.id, exc.message)
            done.request = done.request.model_copy(update={"store": False})  # the answer says so
            return False
        return True

    if isinstance(served, Completion):
        completion = served
        settle(edge, record, ticket, completion.usage)
        edge.telemetry.note_output(record, completion.body)
        edge.telemetry.finish(record, record.event(status=200, usage=completion.usage, upstream_ms=upstream_ms), table)
        from_completion(draft, json.loads(completion.body))
        headers = response_headers(record, upstream_ms, call, plan, ticket)
        headers[STORED_HEADER] = str(await keep(draft) and req.store).lower()
        return JSONResponse(draft.body(), headers=headers)
    headers = response_headers(record, upstream_ms, call, plan, ticket)
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"

    async def finish(done: Draft) -> None:
        await keep(done)

    translator = StreamTranslator(draft, finish)
    events = translator.translate(guarded(served, plan.timeouts, call.route.provider))
    return StreamingResponse(
        metered_stream(events, served.meter, record, edge, None, ticket),
        media_type="text/event-stream",
        headers=headers,
    )


class _Passthrough:
    """The stream side of the pass-through, as chat's first-event wait calls an adapter."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        return await passthrough.stream(call, self.raw, meter)


async def _passed_through(
    edge: Edge, record: RequestRecord, drop: bool, req: ResponsesRequest, plan: Plan, table: RouteTable, stream: bool
) -> Response:
    """To OpenAI's own Responses API, as the client sent it; metered from OpenAI's usage. The
    reservation counts this request's input (a continued conversation's earlier turns are
    OpenAI's to count) and is settled to the usage OpenAI reports."""
    principal = record.principal
    ticket = None
    try:
        ticket = await admit(edge, record, plan, table, chat_body(req, []))
        attempts = edge.telemetry.attempts(record, table)
        if stream:
            adapter = _Passthrough(record.raw_body)

            async def open_stream(route: Route) -> tuple[Call, Opened]:
                return await first_event(edge, record, drop, route, adapter, plan.timeouts)  # type: ignore[arg-type]

            call, opened = await failover.serve(plan, table, edge.health, open_stream, attempts)
            upstream_ms = (time.perf_counter() - opened.meter.started) * 1000
        else:

            async def create(route: Route) -> tuple[Call, Completion]:
                work = with_provider_keys(edge, record, drop, route, lambda c: passthrough.create(c, record.raw_body))
                return await bounded(work, plan.timeouts.total_seconds, route, "answer")

            call, completion = await failover.serve(plan, table, edge.health, create, attempts)
            upstream_ms = completion.upstream_ms
    except GatewayError as exc:
        failed(edge, record, exc, plan, ticket, stream=stream)
        raise
    owner, held_by, model = principal.user, call.route.provider, call.route.upstream_model

    async def keep(response_id: str) -> None:
        if not req.store or not response_id:
            return
        entry = StoredResponse(owner=owner, response={"id": response_id}, held_by=held_by, model=model)
        try:
            await edge.responses.put(response_id, entry)
        except GatewayError as exc:
            log.warning("response %s (kept by %s) could not be noted: %s", response_id, held_by, exc.message)

    if not stream:
        settle(edge, record, ticket, completion.usage)
        edge.telemetry.finish(record, record.event(status=200, usage=completion.usage, upstream_ms=upstream_ms), table)
        headers = response_headers(record, upstream_ms, call, plan, ticket)
        answer = json_data(b"data: " + completion.body) or {}
        await keep(str(answer.get("id") or ""))
        return Response(completion.body, media_type="application/json", headers=headers)
    headers = response_headers(record, upstream_ms, call, plan, ticket)
    headers["cache-control"] = "no-cache"
    events = guarded(opened, plan.timeouts, call.route.provider, passthrough.error_event)
    return StreamingResponse(
        metered_stream(_noting(events, keep), opened.meter, record, edge, None, ticket),
        media_type="text/event-stream",
        headers=headers,
    )


async def _noting(events: AsyncIterator[bytes], keep: Callable[[str], Awaitable[None]]) -> AsyncIterator[bytes]:
    """The events, with where the response is kept noted before its first event reaches the
    client (so a client that reads the id can use it on any edge)."""
    noted = False
    try:
        async for event in events:
            if not noted and event.startswith(b"event: response.created"):
                noted = True
                response = (json_data(event) or {}).get("response")
                await keep(str(response.get("id") or "") if isinstance(response, dict) else "")
            yield event
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def reader(principal: Principal) -> str | None:
    """Whose stored responses a key may read: its user's (an admin key: anyone's)."""
    return None if principal.role == "admin" else principal.user


def _with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as they are stored and listed: each with an id, a message's text as a
    content part (as OpenAI lists them)."""
    for item in items:
        if not item.get("id"):
            item["id"] = new_id(_ID_PREFIX.get(str(item.get("type")), "item"))
        if item.get("type") == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        if item.get("type") == "message":
            item.setdefault("status", "completed")
    return items


def _authenticate(request: Request) -> tuple[Edge, Principal]:
    edge: Edge = request.app.state.edge
    principal = edge.client_keys.authenticate(request.headers.get("authorization"), request.headers.get("api-key"))
    return edge, principal


def _public(item: dict[str, Any], include: list[str]) -> dict[str, Any]:
    if "reasoning.encrypted_content" in include or "encrypted_content" not in item:
        return item
    return {k: v for k, v in item.items() if k != "encrypted_content"}


async def _forward(request: Request, edge: Edge, stored: StoredResponse, method: str, path: str) -> Response:
    """A request about a response OpenAI keeps, to where it is kept, with a key of that
    provider (or account); OpenAI's answer as it came."""
    provider = edge.routes.current().providers.get(stored.held_by)
    if provider is None:
        raise GatewayError(
            NOT_FOUND,
            f"Response with id '{request.path_params['response_id']}' is kept by {stored.held_by!r}, "
            "which is no longer configured.",
            param="response_id",
        )
    pick = edge.credentials.pick if provider.requires_key else edge.credentials.optional
    credential = pick(stored.held_by, stored.model)
    route = Route(model=stored.model, provider=stored.held_by, upstream_model=stored.model)
    call = Call(route, provider, credential, {}, request.state.request_id, edge.http)
    raw = await passthrough.forward(call, method, path, request.url.query)
    return Response(raw, media_type="application/json")


async def retrieve(request: Request) -> Response:
    edge, principal = _authenticate(request)
    response_id = request.path_params["response_id"]
    stored = await edge.responses.get(response_id, reader(principal))
    if stored.held_by:
        return await _forward(request, edge, stored, "GET", f"/{response_id}")
    include = request.query_params.getlist("include") + request.query_params.getlist("include[]")
    body = dict(stored.response)
    body["output"] = [_public(item, include) for item in body.get("output") or []]
    return JSONResponse(body)


async def delete(request: Request) -> Response:
    edge, principal = _authenticate(request)
    response_id = request.path_params["response_id"]
    stored = await edge.responses.get(response_id, reader(principal))
    if stored.held_by:
        answer = await _forward(request, edge, stored, "DELETE", f"/{response_id}")
        await edge.responses.delete(response_id, reader(principal))
        return answer
    await edge.responses.delete(response_id, reader(principal))
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def input_items(request: Request) -> Response:
    """The items used to generate the response: the turns it continues (their input and
    output) and its own input; newest first unless ``order=asc``."""
    edge, principal = _authenticate(request)
    response_id = request.path_params["response_id"]
    user = reader(principal)
    stored = await edge.responses.get(response_id, user)
    if stored.held_by:
        return await _forward(request, edge, stored, "GET", f"/{response_id}/input_items")
    items: list[dict[str, Any]] = []
    if stored.chain:
        last = await edge.responses.get(stored.chain[-1], user)
        _, items = await edge.responses.conversation(last, stored.chain[-1], user)
    items.extend(stored.input)
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise GatewayError(INVALID_REQUEST, "order must be 'asc' or 'desc'.", param="order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise GatewayError(INVALID_REQUEST, "limit must be an integer from 1 to 100.", param="limit")
    if order == "desc":
        items.reverse()
    after = query.get("after")
    if after:
        ids = [str(item.get("id")) for item in items]
        if after not in ids:
            raise GatewayError(INVALID_REQUEST, f"No item with id '{after}' in this response's input.", param="after")
        items = items[ids.index(after) + 1 :]
    include = query.getlist("include") + query.getlist("include[]")
    page = [_public(item, include) for item in items[:limit]]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
