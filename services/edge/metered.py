"""Building the usage event of a request from what the request, the route and the adapter saw."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from services.edge.auth import Principal
from services.edge.prices import price_context
from services.edge.providers.base import Usage
from services.edge.streams import Slot
from shared.catalog import Route
from shared.events import UsageEvent


@dataclass
class RequestRecord:
    request_id: str  # what the client sees as x-request-id (its own X-Request-ID, if it sent one)
    principal: Principal
    endpoint: str
    body: dict[str, Any]
    instance: str
    event_id: str = ""  # the usage event's identity: unique, unlike a client's request id
    started_wall: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    route: Route | None = None
    provider_key_id: str = ""
    routing_decision_id: str = ""
    attempts: int = 0
    trace_id: str = ""
    span: Span | None = None  # the request's trace span, when tracing is on
    attempt_span: Span | None = None
    finish_reasons: list[str] = field(default_factory=list)  # noted only while tracing
    output: str | None = None  # the completion, noted only when traces may carry content
    outcome: UsageEvent | None = None  # the usage event, once the request has ended
    raw_body: bytes = b""  # the body as the client sent it (passed through untouched where it can be)
    # ``body`` while it is exactly ``raw_body`` parsed (nothing taken out, not replaced by a
    # translation): then the client's bytes can go upstream as they are.
    exact_body: dict[str, Any] | None = None
    stream_slot: Slot | None = None  # a stream's place among its key's open streams on this process
    # The fields the serving attempt dropped as its provider cannot honour them (its Call's list).
    dropped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.event_id = self.event_id or self.request_id

    @property
    def price_context(self) -> str:
        """The kind of request it was billed as: what it asked for and its provider was sent."""
        return price_context(self.body, self.dropped)

    def admitted(self, route: Route, prompt: int, output: int, deadline: float) -> UsageEvent:
        """The record published before the upstream call: what the request may consume, on
        its first target, by when it must have ended."""
        return UsageEvent(
            **self._identity(route),
            stream=self.body.get("stream") is True,
            status=0,
            prompt_tokens=prompt,
            completion_tokens=output,
            usage_estimated=True,
            phase="admitted",
            deadline=deadline,
        )

    def _identity(self, route: Route | None) -> dict[str, Any]:
        """What the request's note and its event both say of it: who, what, where."""
        user_field = self.body.get("user")
        requested = self.body.get("model")
        return {
            "event_id": self.event_id,
            "ts": self.started_wall,
            "client_key_id": self.principal.key_id,
            "user": self.principal.user,
            "request_user": user_field if isinstance(user_field, str) else "",
            "requested_model": requested if isinstance(requested, str) else "",
            "model": route.model if route else "",
            "provider": route.billed_provider if route else "",
            "provider_account": route.account if route else "",
            "endpoint": self.endpoint,
            "edge_instance": self.instance,
            "project": self.principal.project or "",
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "price_context": self.price_context,
        }

    def event(
        self,
        *,
        status: int,
        usage: Usage | None = None,
        error_type: str = "",
        stream: bool = False,
        ttft_ms: float = 0.0,
        upstream_ms: float = 0.0,
    ) -> UsageEvent:
        usage = usage or Usage()
        return UsageEvent(
            **self._identity(self.route),
            provider_key_id=self.provider_key_id,
            stream=stream,
            status=status,
            error_type=error_type,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_estimated=usage.estimated,
            ttft_ms=ttft_ms,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            upstream_latency_ms=upstream_ms,
            routing_decision_id=self.routing_decision_id,
            attempts=self.attempts,
        )
