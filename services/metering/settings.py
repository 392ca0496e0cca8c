"""Metering settings: the bus, ClickHouse, and batching."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import ServiceSettings


class MeteringSettings(ServiceSettings):
    # /healthz and /readyz (0: any free port, logged at start).
    port: int = Field(default=9103, ge=0, le=65535, validation_alias="GATEWAY_METERING_PORT")
    clickhouse_dsn: str | None = Field(default=None, validation_alias="GATEWAY_CLICKHOUSE_DSN")
    # A ClickHouse cluster's name (remote_servers): Replicated tables ON CLUSTER, Distributed over them.
    clickhouse_cluster: str | None = Field(default=None, validation_alias="GATEWAY_CLICKHOUSE_CLUSTER")
    batch_size: int = Field(default=1000, ge=1, le=50_000, validation_alias="GATEWAY_METERING_BATCH_SIZE")
    batch_wait: float = Field(default=0.5, gt=0, le=30, validation_alias="GATEWAY_METERING_BATCH_WAIT_SECONDS")
    ack_wait: float = Field(default=30.0, ge=1, le=3600, validation_alias="GATEWAY_METERING_ACK_WAIT_SECONDS")
    # The rollup groups of what was stored are recomputed (and its messages acknowledged) at
    # most this often (and under a third of the ack wait): each refresh scans the touched
    # groups' events (docs/analytics.md).
    rollup_refresh: float = Field(default=5.0, ge=0, le=60, validation_alias="GATEWAY_ROLLUP_REFRESH_SECONDS")
    # How often open budget counters are raised to the metered spend (docs/limits.md).
    budget_reconcile_seconds: float = Field(
        default=5.0, gt=0, le=3600, validation_alias="GATEWAY_BUDGET_RECONCILE_SECONDS"
    )
    # How often metering compares the last hours' rollup with the raw events and repairs it
    # (services/metering/reconcile.py), and how many hours back; 0 turns it off.
    reconcile_seconds: float = Field(default=600.0, ge=0, le=86_400, validation_alias="GATEWAY_RECONCILE_SECONDS")
    reconcile_hours: int = Field(default=3, ge=1, le=24 * 31, validation_alias="GATEWAY_RECONCILE_HOURS")
    # Requests of an edge that died are billed at their reservation once it has missed three
    # heartbeats and this many seconds more (for its last events to be stored), looked for every
    # GATEWAY_ORPHAN_SWEEP_SECONDS (0: never) among the admissions of the last
    # GATEWAY_ORPHAN_LOOKBACK_HOURS (longer than the longest total bound of a route: 1 h by default).
    orphan_grace_seconds: float = Field(default=60.0, ge=0, le=3600, validation_alias="GATEWAY_ORPHAN_GRACE_SECONDS")
    orphan_sweep_seconds: float = Field(default=15.0, ge=0, le=3600, validation_alias="GATEWAY_ORPHAN_SWEEP_SECONDS")
    orphan_lookback_hours: float = Field(
        default=26.0, gt=0, le=24 * 7, validation_alias="GATEWAY_ORPHAN_LOOKBACK_HOURS"
    )
    retention_days: int = Field(default=400, ge=1, validation_alias="GATEWAY_USAGE_RETENTION_DAYS")
    # How long audit_events keeps admin changes (applied at every start, like the usage retention).
    audit_retention_days: int = Field(default=400, ge=1, validation_alias="GATEWAY_AUDIT_RETENTION_DAYS")
    # A mounted price file (what POST /ai/catalog takes: a dataset, prices, models allowed
    # unpriced), read at start and again whenever its content changes (services/metering/price_file.py).
    prices_file: Path | None = Field(default=None, validation_alias="GATEWAY_PRICES_FILE")
    prices_file_poll_seconds: float = Field(
        default=2.0, gt=0, le=3600, validation_alias="GATEWAY_PRICES_FILE_POLL_SECONDS"
    )

    def refresh_every(self) -> float:
        """The rollup refresh's cadence: ``rollup_refresh``, held under a third of the ack wait
        (its messages wait unacknowledged until it, and must not be redelivered meanwhile)."""
        return min(self.rollup_refresh, self.ack_wait / 3)

    def dsn(self) -> str:
        """The DSN to use: an external server's, or the embedded engine in the data dir."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"
