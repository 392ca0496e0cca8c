"""OpenTelemetry traces of model requests, exported over OTLP/HTTP when the standard
environment asks for it (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` turns it off; ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_HEADERS`` and the batch processor's variables are honoured by the SDK).

A request is a SERVER span named ``{operation} {model}`` that continues the caller's
``traceparent``; each upstream attempt (a retry or a fallback included) is a CLIENT span under
it. Attributes follow the GenAI semantic conventions. Prompts and completions are exported
only with ``GATEWAY_OTEL_CAPTURE_CONTENT=true``.

Without an endpoint no tracer exists and a request pays only for reading its ``traceparent``
(its trace id still goes into the usage event).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.edge.metrics import OPERATIONS, provider_name
from shared.catalog import Route
from shared.events import UsageEvent
from shared.version import VERSION

log = logging.getLogger("switchyard.edge.tracing")

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_PROPAGATOR = TraceContextTextMapPropagator()
# Request parameters recorded as gen_ai.request.* attributes when the body has them.
_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}


def enabled(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def inbound_trace_id(traceparent: str | None) -> str:
    """The trace id of a W3C ``traceparent`` header ("" if there is none or it is malformed)."""
    if not traceparent:
        return ""
    found = _TRACEPARENT.match(traceparent.strip())
    return found.group(1) if found and found.group(1) != "0" * 32 else ""


class Tracing:
    def __init__(self, provider: TracerProvider | None, *, capture_content: bool = False) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("switchyard.edge", VERSION) if provider is not None else None
        self.capture_content = capture_content

    @classmethod
    def from_environment(cls, *, capture_content: bool, environ: Mapping[str, str] | None = None) -> Tracing:
        environ = os.environ if environ is None else environ
        if not enabled(environ):
            return cls(None)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "switchyard-edge"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("exporting traces over OTLP/HTTP")
        return cls(provider, capture_content=capture_content)

    @property
    def on(self) -> bool:
        return self.tracer is not None

    def start(self, endpoint: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> Span | None:
        """The request's span, continuing the caller's trace (None when tracing is off)."""
        if self.tracer is None:
            return None
        operation = OPERATIONS.get(endpoint, endpoint)
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation, "gen_ai.request.model": model}
        for name, attribute in _PARAMS.items():
            value = body.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[attribute] = value
        if self.capture_content and isinstance(body.get("messages"), list):
            attributes["gen_ai.input.messages"] = json.dumps(body["messages"], ensure_ascii=False, default=str)
        context = _PROPAGATOR.extract(headers)
        return self.tracer.start_span(
            f"{operation} {model}".strip(), context=context, kind=SpanKind.SERVER, attributes=attributes
        )

    def attempt(self, parent: Span | None, operation: str, route: Route, server: str) -> Span | None:
        if self.tracer is None or parent is None:
            return None
        return self.tracer.start_span(
            f"{OPERATIONS.get(operation, operation)} {route.upstream_model}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": OPERATIONS.get(operation, operation),
                "gen_ai.provider.name": provider_name(route.billed_provider),
                "gen_ai.request.model": route.upstream_model,
                "server.address": server,
                "switchyard.target": route.target,
                "switchyard.provider_account": route.account or "",
            },
        )

    @staticmethod
    def attempt_ended(span: Span | None, error: str | None, status: int | None) -> None:
        if span is None:
            return
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def end(self, span: Span | None, event: UsageEvent, finish_reasons: list[str], output: str | None) -> None:
        if span is None:
            return
        span.set_attributes(
            {
                "gen_ai.provider.name": provider_name(event.provider),
                "gen_ai.response.model": event.model,
                "gen_ai.usage.input_tokens": event.prompt_tokens,
                "gen_ai.usage.output_tokens": event.completion_tokens,
                "gen_ai.response.finish_reasons": finish_reasons,
                "http.response.status_code": event.status,
                "switchyard.request_id": event.request_id or event.event_id,
                "switchyard.attempts": event.attempts,
                "switchyard.stream": event.stream,
            }
        )
        if self.capture_content and output is not None:
            span.set_attribute("gen_ai.output.messages", output)
        if event.error_type:
            span.set_attribute("error.type", event.error_type)
        if event.status >= 500 or event.status == 499:
            span.set_status(Status(StatusCode.ERROR, event.error_type))
        span.end()

    def shutdown(self) -> None:
        """Export what is still buffered (blocking: run it in a thread)."""
        if self.provider is not None:
            self.provider.shutdown()


def trace_id_of(span: Span | None, traceparent: str | None) -> str:
    if span is not None:
        return format(span.get_span_context().trace_id, "032x")
    return inbound_trace_id(traceparent)
