"""Trace spans of a request (services/edge/tracing.py), exported to the SDK's in-memory
exporter: the caller's trace continued, GenAI attributes, no content unless asked."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.edge.tracing import Tracing, enabled, inbound_trace_id, trace_id_of
from shared.catalog import Route
from shared.events import UsageEvent

TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
BODY = {"model": "gpt-4o", "max_tokens": 7, "messages": [{"role": "user", "content": "secret prompt"}]}


def _tracing(capture: bool) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, capture_content=capture), exporter


def _route() -> Route:
    return Route(provider="openai", model="gpt-4o", upstream_model="gpt-4o-2024-08-06")


def test_a_request_continues_the_callers_trace_with_an_attempt_under_it() -> None:
    tracing, exporter = _tracing(capture=False)
    span = tracing.start("chat.completions", BODY, {"traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert trace_id_of(span, None) == TRACE
    attempt = tracing.attempt(span, "chat.completions", _route(), "api.openai.com")
    Tracing.attempt_ended(attempt, "503", 503)
    event = UsageEvent(event_id="req_1", ts=0, provider="openai", model="gpt-4o", prompt_tokens=3, completion_tokens=4)
    tracing.end(span, event, ["stop"], output='[{"content": "secret answer"}]')
    client, server = exporter.get_finished_spans()
    assert server.kind == SpanKind.SERVER and server.name == "chat gpt-4o"
    assert format(server.parent.span_id, "016x") == PARENT and format(server.context.trace_id, "032x") == TRACE
    assert client.kind == SpanKind.CLIENT and client.parent.span_id == server.context.span_id
    assert client.status.status_code == StatusCode.ERROR and client.attributes["error.type"] == "503"
    assert server.attributes["gen_ai.request.max_tokens"] == 7
    assert server.attributes["gen_ai.usage.output_tokens"] == 4
    assert server.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.input.messages" not in server.attributes and "gen_ai.output.messages" not in server.attributes


def test_content_is_recorded_only_when_asked() -> None:
    tracing, exporter = _tracing(capture=True)
    span = tracing.start("chat.completions", BODY, {})
    tracing.end(span, UsageEvent(event_id="req_2", ts=0), [], output='[{"content": "secret answer"}]')
    (server,) = exporter.get_finished_spans()
    assert "secret prompt" in str(server.attributes["gen_ai.input.messages"])
    assert "secret answer" in str(server.attributes["gen_ai.output.messages"])


def test_off_without_an_endpoint_and_the_inbound_trace_id_still_read() -> None:
    assert not enabled({}) and not enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"})
    off = Tracing(None)
    assert off.start("chat.completions", BODY, {"traceparent": f"00-{TRACE}-{PARENT}-01"}) is None
    assert trace_id_of(None, f"00-{TRACE}-{PARENT}-01") == TRACE
    assert inbound_trace_id("00-" + "0" * 32 + f"-{PARENT}-01") == "" and inbound_trace_id("garbage") == ""
