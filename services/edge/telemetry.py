"""What the edge reports of each model request: its usage event (to metering), its metrics,
its trace, and what the access line says. Every model endpoint opens a request with
:meth:`Telemetry.open`, reports upstream attempts through :class:`Attempts`, and ends it with
:meth:`Telemetry.finish` exactly once, whatever happened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from services.edge.metered import RequestRecord
from services.edge.metrics import EdgeMetrics
from services.edge.prices import EdgePrices
from services.edge.tracing import Tracing, trace_id_of
from services.edge.usage import UsagePublisher
from shared.catalog import Route, RouteTable
from shared.errors import GatewayError
from shared.events import UsageEvent

log = logging.getLogger("switchyard.edge.telemetry")


class Telemetry:
    def __init__(self, usage: UsagePublisher, metrics: EdgeMetrics, tracing: Tracing, prices: EdgePrices) -> None:
        self.usage = usage
        self.metrics = metrics
        self.tracing = tracing
        self.prices = prices

    def open(self, record: RequestRecord, headers: Mapping[str, str]) -> None:
        """The request's trace span (continuing the caller's) and trace id."""
        traceparent = headers.get("traceparent")
        record.span = self.tracing.start(record.endpoint, record.body, headers)
        record.trace_id = trace_id_of(record.span, traceparent)

    def attempts(self, record: RequestRecord, table: RouteTable) -> Attempts:
        return Attempts(self, record, table)

    def note_output(self, record: RequestRecord, body: bytes) -> None:
        """A non-streamed answer's finish reasons (and content, if traces may carry it)."""
        if record.span is None:
            return
        try:
            choices = json.loads(body).get("choices") or []
        except (ValueError, AttributeError):
            return
        self._note_choices(record, choices)

    def note_chunk(self, record: RequestRecord, chunk: bytes) -> None:
        """A stream's chunk that may carry a finish reason (the last ones)."""
        if record.span is None or not chunk.startswith(b"data: {"):
            return
        try:
            choices = json.loads(chunk[6:]).get("choices") or []
        except (ValueError, AttributeError):
            return
        self._note_choices(record, choices)

    def _note_choices(self, record: RequestRecord, choices: list[Any]) -> None:
        for choice in choices:
            if isinstance(choice, dict):
                reason = choice.get("finish_reason")
                if isinstance(reason, str):
                    record.finish_reasons.append(reason)
                message = choice.get("message")
                if self.tracing.capture_content and isinstance(message, dict):
                    record.output = json.dumps([message], ensure_ascii=False, default=str)

    def close(self, record: RequestRecord, status: int) -> None:
        """A request that is not metered (counting tokens) ended: its spans end."""
        for span in (record.attempt_span, record.span):
            if span is not None:
                span.set_attribute("http.response.status_code", status)
                span.end()
        record.span = record.attempt_span = None

    def finish(self, record: RequestRecord, event: UsageEvent, route_table: RouteTable | None) -> None:
        """The request ended: publish its usage event, count it, end its trace."""
        record.outcome = event
        self.usage.submit(event)  # first: nothing below may cost a request its metering
        if record.stream_slot is not None:
            record.stream_slot.release()
        try:
            cost = 0.0
            if route_table is not None and (event.prompt_tokens or event.completion_tokens):
                cost = self.prices.cost(record.route, route_table, event, event.price_context, event.ts)
            self.metrics.observe(event, cost)
            if record.attempt_span is not None:  # an attempt still open: the request ended in it
                Tracing.attempt_ended(record.attempt_span, event.error_type or None, None)
                record.attempt_span = None
            if record.span is not None:
                self.tracing.end(record.span, event, record.finish_reasons, record.output)
                record.span = None
        except Exception:  # a bug here must not fail the request, whose answer is already out
            log.exception("recording the metrics or trace of %s failed", event.event_id)


class Attempts:
    """Told of each upstream attempt by failover.serve: the record's route and attempt
    count, a CLIENT span per attempt, and the upstream-error and fallback counters."""

    def __init__(self, telemetry: Telemetry, record: RequestRecord, table: RouteTable) -> None:
        self.telemetry = telemetry
        self.record = record
        self.table = table

    def attempting(self, route: Route) -> None:
        record, metrics = self.record, self.telemetry.metrics
        previous = record.route
        if previous is not None and previous.target != route.target:
            metrics.fell_back(str(record.body.get("model", "")), previous.billed_provider, route.billed_provider)
        record.route = route
        record.attempts += 1
        if record.span is not None:
            provider = self.table.providers.get(route.provider)
            server = urlsplit(provider.base_url).hostname or "" if provider is not None else ""
            record.attempt_span = self.telemetry.tracing.attempt(record.span, record.endpoint, route, server)

    def attempted(self, route: Route, error: GatewayError | None, cause: str | None) -> None:
        if error is not None:
            self.telemetry.metrics.upstream_failed(route.billed_provider, cause or error.type)
        if record_span := self.record.attempt_span:
            self.record.attempt_span = None
            status = error.upstream_status if error is not None else 200
            Tracing.attempt_ended(record_span, (cause or error.type) if error is not None else None, status)
