"""The settings base every service builds on."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common to every service: where the bus is, how to reach it, where local data lives,
    and how long a stop may take."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # The address the service's HTTP port binds (the edge's API, the others' health endpoints).
    host: str = Field(default="127.0.0.1", validation_alias="GATEWAY_HOST")
    # One URL or a comma-separated list of a cluster's URLs; user and password may be in them.
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="GATEWAY_NATS_URL")
    # A NATS `.creds` file (JWT and nkey seed), for servers run in operator mode.
    nats_creds: Path | None = Field(default=None, validation_alias="GATEWAY_NATS_CREDS")
    # The CA that signed the NATS servers' certificates, for tls:// URLs (else the system's).
    nats_ca_file: Path | None = Field(default=None, validation_alias="GATEWAY_NATS_CA_FILE")
    # Replicas of every stream and KV bucket Switchyard creates: 1 for one server, 3 for a cluster.
    nats_replicas: int = Field(default=1, ge=1, le=5, validation_alias="GATEWAY_NATS_REPLICAS")
    # On SIGTERM: stop taking work, finish what is in flight within this time, then exit.
    drain_seconds: float = Field(default=30.0, ge=0, le=3600, validation_alias="GATEWAY_DRAIN_SECONDS")
    data_dir: Path = Field(default=Path(".data"), validation_alias="GATEWAY_DATA_DIR")
    log_level: str = Field(default="INFO", validation_alias="GATEWAY_LOG_LEVEL")
    # text (default) or json: one JSON object per line (shared/logs.py).
    log_format: Literal["text", "json"] = Field(default="text", validation_alias="GATEWAY_LOG_FORMAT")
    # How often every service process says it is alive on the bus (GET /ai/status lists them).
    heartbeat_seconds: float = Field(default=10.0, gt=0, le=300, validation_alias="GATEWAY_HEARTBEAT_SECONDS")
    # Limits of the streams Switchyard creates (usage, audit, dead letters; docs/analytics.md):
    # a full stream refuses new events (an edge spools them) rather than drop stored ones. Set
    # at creation only: a limit an operator changes on a stream stays. 0: no limit.
    stream_max_bytes: int = Field(default=8 * 1024**3, ge=0, validation_alias="GATEWAY_STREAM_MAX_BYTES")
    stream_max_age_days: float = Field(default=0.0, ge=0, validation_alias="GATEWAY_STREAM_MAX_AGE_DAYS")
    # GET /metrics wants this bearer token when set (every service's port).
    metrics_token: SecretStr = Field(default=SecretStr(""), validation_alias="GATEWAY_METRICS_TOKEN")
