"""What a response says about how it was routed: ``x_switchyard`` in the JSON body (for
streams in the last chunk before ``[DONE]``: the usage chunk, or the one with the finish
reason), the ``x-switchyard-*`` headers, and the deprecation headers of a retired model. The
SDKs accept the extra field."""

from __future__ import annotations

import json
import re
import time

from services.edge.metered import RequestRecord
from services.edge.sse import frame
from shared.catalog import Plan

PROVIDER_HEADER = "x-switchyard-provider"
MODEL_HEADER = "x-switchyard-model"
ATTEMPTS_HEADER = "x-switchyard-attempts"
DECISION_HEADER = "x-switchyard-routing-decision"
SUCCESSOR_HEADER = "x-model-deprecated-successor"


def metadata(record: RequestRecord, region: str) -> dict[str, object]:
    route = record.route
    return {
        "routing_decision_id": record.routing_decision_id,
        "provider_used": route.provider if route else None,
        "model_used": route.upstream_model if route else None,
        "attempts": record.attempts,
        "cache_status": "none",  # no response cache yet: every answer comes from a provider
        "region": region,
    }


def headers(record: RequestRecord, plan: Plan | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if record.routing_decision_id:
        out[DECISION_HEADER] = record.routing_decision_id
    if record.attempts:
        out[ATTEMPTS_HEADER] = str(record.attempts)
    if record.route is not None:
        out[PROVIDER_HEADER] = record.route.provider
        out[MODEL_HEADER] = record.route.upstream_model
    if plan is not None and plan.successor:
        out["deprecation"] = "true"
        out[SUCCESSOR_HEADER] = plan.successor
    return out


def into_body(body: bytes, meta: dict[str, object]) -> bytes:
    """The JSON object ``body`` with ``x_switchyard`` added as its last member (a splice: the
    provider's bytes are not parsed again)."""
    end = body.rstrip()
    if not end.endswith(b"}") or not end.lstrip().startswith(b"{"):
        return body
    inner = end[:-1].rstrip()
    sep = b"" if inner.endswith(b"{") else b","
    return inner + sep + b'"x_switchyard":' + json.dumps(meta, separators=(",", ":")).encode() + b"}"


# A chunk that may be a stream's last: it carries a finish reason or the usage. Only such a
# chunk is held back until the next event shows whether ``[DONE]`` follows it; content chunks
# pass at once.
_FINAL = re.compile(rb'"finish_reason":\s*"|"usage":\s*\{')


def may_be_last(event: bytes) -> bool:
    return _FINAL.search(event) is not None


def into_event(event: bytes, meta: dict[str, object]) -> bytes:
    """An SSE event ``data: {...}\n\n`` with ``x_switchyard`` added to its JSON object."""
    data = event[6:].rstrip(b"\n") if event.startswith(b"data: ") else b""
    spliced = into_body(data, meta)
    return event if spliced is data else frame(spliced)


def stream_chunk(record: RequestRecord, meta: dict[str, object]) -> bytes:
    """A chunk with no choices that carries the metadata, for a stream whose last chunk
    before ``[DONE]`` was of no known shape."""
    chunk = {
        "id": record.request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": meta["model_used"],
        "choices": [],
        "x_switchyard": meta,
    }
    return frame(json.dumps(chunk, separators=(",", ":")).encode())
