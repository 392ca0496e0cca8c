"""Events published on the bus: the usage event, one per request."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

USAGE_SCHEMA_VERSION = 1


class UsageEvent(BaseModel):
    """One request through the edge, as metered. Published with ``event_id`` as Nats-Msg-Id."""

    schema_version: int = USAGE_SCHEMA_VERSION
    event_id: str
    ts: float = Field(description="request start, seconds since the epoch (UTC)")
    client_key_id: str = ""
    user: str = ""
    request_user: str = ""
    requested_model: str = ""
    model: str = ""
    provider: str = ""
    provider_key_id: str = ""
    endpoint: str = ""
    stream: bool = False
    status: int = 200
    error_type: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # cache reads, part of prompt_tokens
    cache_write_tokens: int = 0  # cache writes, part of prompt_tokens
    cache_write_1h_tokens: int = 0  # the cache writes with a 1-hour TTL, part of cache_write_tokens
    reasoning_tokens: int = 0  # part of completion_tokens
    usage_estimated: bool = False
    ttft_ms: float = 0.0
    latency_ms: float = 0.0
    upstream_latency_ms: float = 0.0
    edge_instance: str = ""
    # Routing: the decision's id (also in the response's x_switchyard), how many upstream
    # attempts it took, and the named account the target belonged to ("" for the provider's own).
    routing_decision_id: str = ""
    attempts: int = 0
    provider_account: str = ""
    project: str = ""  # the client key's project, for budgets and usage by project
    # The x-request-id the client saw: the event id, or the client's own X-Request-ID (which
    # need not be unique, so it is not the event's identity).
    request_id: str = ""
    trace_id: str = ""  # W3C trace id (32 hex digits) of the request's trace, if it has one
    # "admitted": published before the upstream call, with what the request may consume (its
    # tokens are the reservation, ``deadline`` when it must have ended); the "final" event of
    # the same id replaces it. An admitted request whose final event never comes (its edge
    # died) is billed at the reservation by metering (services/metering/orphans.py).
    phase: Literal["final", "admitted"] = "final"
    deadline: float = 0.0
    # The kind of request, where it changes the price (``key=value``, comma separated):
    # ``service_tier=priority``, ``speed=fast``, ``processing=batch`` (shared/cost.py).
    price_context: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class AuditEvent(BaseModel):
    """Who did what, when, from where: every admin call and every provider-key decryption.
    Never carries a secret."""

    schema_version: int = 1
    event_id: str
    ts: float
    actor: str  # a client key id, "admin", or the service instance that acted
    actor_user: str = ""
    action: str  # e.g. "POST /ai/providers/keys", "provider_key.decrypt"
    target: str = ""
    status: int = 200
    source: str = ""  # the client address, or the edge a key was delivered to
    instance: str = ""
