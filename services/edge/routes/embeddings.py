"""``POST /v1/embeddings``: auth, route, the provider's embeddings endpoint, meter.

OpenAI and the OpenAI-compatible providers (Mistral among them) take the request as sent;
Gemini's ``embedContent`` / ``batchEmbedContents`` are translated by its adapter.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.edge.auth import require_model
from services.edge.body import check_model
from services.edge.routes.chat import begin, response_headers, with_provider_keys
from shared.errors import INVALID_REQUEST, MISSING_PARAM, GatewayError


def check_embeddings(body: dict[str, Any]) -> None:
    check_model(body)
    value = body.get("input")
    if value is None:
        raise GatewayError(MISSING_PARAM, "Missing required parameter: 'input'.", param="input")
    if not isinstance(value, (str, list)) or (isinstance(value, list) and not value) or value == "":
        raise GatewayError(INVALID_REQUEST, "'input' must be a non-empty string or array.", param="input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise GatewayError(INVALID_REQUEST, "'encoding_format' must be float or base64.", param="encoding_format")


async def embeddings(request: Request) -> Response:
    edge, record, drop = await begin(request, "embeddings", check_embeddings)
    body, principal = record.body, record.principal
    try:
        record.route = edge.routes.resolve(str(body["model"]))
        require_model(principal, str(body["model"]), record.route.model)
        provider = edge.routes.current().providers[record.route.provider]
        embedder = edge.registry.embedder(provider.api, record.route.provider)
        call, completion = await with_provider_keys(edge, record, drop, embedder.embed)
    except GatewayError as exc:
        edge.usage.submit(record.event(status=exc.status, error_type=exc.type))
        exc.headers["x-request-id"] = record.request_id
        raise
    edge.usage.submit(record.event(status=200, usage=completion.usage, upstream_ms=completion.upstream_ms))
    headers = response_headers(record, completion.upstream_ms, call)
    return Response(completion.body, media_type="application/json", headers=headers)
