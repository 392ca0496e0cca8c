"""The Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items`` (also under ``/ai/v1``).

A request is checked into typed items (services/edge/responses/items.py), joined to the
conversation it continues (``previous_response_id``, from the shared store), translated to a
chat completions request and served by the chat machinery: routing, fallbacks, limits and
budgets, metering and telemetry are chat's, and every provider is reached through its chat
adapter. The answer comes back as a response object, or as the Responses API's typed events.
A response with ``store`` (the default) is kept before the client is told it is complete, so
the next turn works on any edge at once.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.edge.auth import Principal, require_model
from services.edge.body import check_model
from services.edge.providers.base import Completion
from services.edge.responses.from_chat import Draft, StreamTranslator, from_completion, new_id
from services.edge.responses.items import (
    FunctionCall,
    FunctionCallOutput,
    Message,
    Reasoning,
    parse_items,
    parse_request,
)
from services.edge.responses.store import StoredResponse
from services.edge.responses.to_chat import chat_body
from services.edge.routes.chat import attempt, begin, failed, guarded, metered_stream, response_headers, settle
from services.edge.state import Edge
from shared.errors import INVALID_REQUEST, TOO_LARGE, GatewayError

log = logging.getLogger("switchyard.edge.responses")

STORED_HEADER = "x-switchyard-stored"
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


async def create(request: Request) -> Response:
    edge, record, drop = await begin(request, "responses", check_model)
    principal = record.principal
    plan = ticket = None
    stream = record.body.get("stream") is True
    try:
        req = parse_request(record.body)
        chain: list[str] = []
        context: list[Message | FunctionCall | FunctionCallOutput | Reasoning] = []
        if req.previous_response_id:
            chain, earlier = await edge.responses.conversation(req.previous_response_id, reader(principal))
            context = parse_items(earlier)
        turn = _with_ids([item.model_dump(exclude_none=True, by_alias=True) for item in req.input_items()])
        if req.store and len(json.dumps(turn)) > edge.responses.room():
            raise GatewayError(
                TOO_LARGE, "This input is more than the response store keeps; send store: false.", param="input"
            )
        record.body = chat_body(req, context)
        draft = Draft(req)
        plan = edge.routes.plan(req.model)
        require_model(principal, req.model, plan.model)
        table = edge.routes.current()
        ticket = await edge.admission.admit(principal, plan, table, record.body)
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


async def retrieve(request: Request) -> Response:
    edge, principal = _authenticate(request)
    stored = await edge.responses.get(request.path_params["response_id"], reader(principal))
    include = request.query_params.getlist("include") + request.query_params.getlist("include[]")
    body = dict(stored.response)
    body["output"] = [_public(item, include) for item in body.get("output") or []]
    return JSONResponse(body)


async def delete(request: Request) -> Response:
    edge, principal = _authenticate(request)
    response_id = request.path_params["response_id"]
    await edge.responses.delete(response_id, reader(principal))
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def input_items(request: Request) -> Response:
    """The items used to generate the response: the turns it continues (their input and
    output) and its own input; newest first unless ``order=asc``."""
    edge, principal = _authenticate(request)
    response_id = request.path_params["response_id"]
    user = reader(principal)
    stored = await edge.responses.get(response_id, user)
    items: list[dict[str, Any]] = []
    if stored.chain:
        _, items = await edge.responses.conversation(stored.chain[-1], user)
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
