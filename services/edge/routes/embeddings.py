"""``POST /v1/embeddings``: auth, route, the provider's embeddings endpoint, meter.

OpenAI and the OpenAI-compatible providers (Mistral among them) take the request as sent;
Gemini's ``embedContent`` / ``batchEmbedContents`` are translated by its adapter.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.edge import failover, metadata
from services.edge.auth import require_model
from services.edge.body import MAX_EMBEDDING_INPUTS, check_length, check_model, check_user
from services.edge.providers.base import Call, Completion
from services.edge.routes.chat import admit, begin, bounded, failed, response_headers, settle, with_provider_keys
from shared.catalog import Route
from shared.errors import INVALID_REQUEST, MISSING_PARAM, GatewayError


def check_embeddings(body: dict[str, Any]) -> None:
    check_model(body)
    check_user(body)
    value = body.get("input")
    if value is None:
        raise GatewayError(MISSING_PARAM, "Missing required parameter: 'input'.", param="input")
    if not isinstance(value, (str, list)) or (isinstance(value, list) and not value) or value == "":
        raise GatewayError(INVALID_REQUEST, "'input' must be a non-empty string or array.", param="input")
    if isinstance(value, list):
        check_length(value, MAX_EMBEDDING_INPUTS, "input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise GatewayError(INVALID_REQUEST, "'encoding_format' must be float or base64.", param="encoding_format")


async def embeddings(request: Request) -> Response:
    edge, record, drop = await begin(request, "embeddings", check_embeddings)
    body, principal = record.body, record.principal
    plan = ticket = None
    try:
        plan = edge.routes.plan(str(body["model"]))
        require_model(principal, plan)
        table = edge.routes.current()
        ticket = await admit(edge, record, plan, table, body, consumes="embeddings")

        async def embed(route: Route) -> tuple[Call, Completion]:
            embedder = edge.registry.embedder(table.providers[route.provider].api, route.provider)
            work = with_provider_keys(edge, record, drop, route, embedder.embed)
            return await bounded(work, plan.timeouts.total_seconds, route, "answer")

        attempts = edge.telemetry.attempts(record, table)
        call, completion = await failover.serve(plan, table, edge.health, embed, attempts)
    except GatewayError as exc:
        failed(edge, record, exc, plan, ticket, stream=False)
        raise
    settle(edge, record, ticket, completion.usage)
    edge.telemetry.finish(
        record, record.event(status=200, usage=completion.usage, upstream_ms=completion.upstream_ms), table
    )
    headers = response_headers(record, completion.upstream_ms, call, plan, ticket)
    body_out = metadata.into_body(completion.body, metadata.metadata(record, edge.settings.region))
    return Response(body_out, media_type="application/json", headers=headers)
