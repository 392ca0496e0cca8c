"""Metering's Prometheus metrics (served on its health port, shared/health.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_STORED = Counter(
    "switchyard_usage_events_stored_total", "Events written to ClickHouse for the first time", ["table"]
)
EVENTS_DUPLICATE = Counter(
    "switchyard_usage_events_duplicate_total", "Redelivered events found already stored", ["table"]
)
EVENTS_DEAD_LETTERED = Counter(
    "switchyard_usage_events_dead_lettered_total", "Events moved to the dead-letter stream", ["table"]
)
INSERT_FAILURES = Counter(
    "switchyard_usage_insert_failures_total", "Batches ClickHouse did not take (they are redelivered)", ["table"]
)
PENDING = Gauge("switchyard_usage_pending", "Usage events in JetStream not yet stored (the consumer's lag)")
DEAD_LETTERS = Gauge("switchyard_usage_dead_letters", "Messages held in the dead-letter stream")
CLICKHOUSE_UP = Gauge("switchyard_clickhouse_up", "1 while ClickHouse answers metering's ping")
STREAM_BYTES = Gauge("switchyard_stream_bytes", "Bytes a JetStream stream holds", ["stream"])
STREAM_MAX_BYTES = Gauge("switchyard_stream_max_bytes", "A stream's byte limit (-1: none)", ["stream"])
STREAM_FILL = Gauge(
    "switchyard_stream_fill_ratio", "How full a stream is against its byte limit (0 when it has none)", ["stream"]
)
ROLLUP_DIFFERENCES = Gauge(
    "switchyard_rollup_difference_groups",
    "Hourly rollup groups that differed from the raw events at the last reconciliation (0: exact)",
)
ROLLUP_RECONCILED = Gauge("switchyard_rollup_reconciled_timestamp_seconds", "When the rollup was last reconciled")
ORPHANS_BILLED = Counter(
    "switchyard_usage_orphans_billed_total",
    "Requests billed at their reservation because their edge died before they ended (error_type edge_lost)",
)
