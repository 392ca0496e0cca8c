"""Launcher settings: the operator contract's environment (see README)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# In start order: the edge last, once what it depends on answers.
ALL_SERVICES = ("router", "keyvault", "metering", "edge")


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = Field(default="127.0.0.1", validation_alias="GATEWAY_HOST")
    port: int = Field(default=8080, ge=0, le=65535, validation_alias="GATEWAY_PORT")
    data_dir: Path = Field(default=Path(".data"), validation_alias="GATEWAY_DATA_DIR")
    admin_key: SecretStr | None = Field(default=None, validation_alias="GATEWAY_ADMIN_KEY")
    # One per core, at most two: on one machine the edge shares the cores with NATS, metering
    # and the rest, and each worker is a process of its own memory (a laptop's default stays
    # light). Set it for more; an edge deployed alone (services/edge) takes one per core.
    edge_workers: int = Field(
        default_factory=lambda: min(os.cpu_count() or 1, 2), ge=1, le=64, validation_alias="GATEWAY_EDGE_WORKERS"
    )
    # Which services this node runs (comma list): several machines, or one playing several nodes.
    services: str = Field(default="router,keyvault,metering,edge", validation_alias="GATEWAY_SERVICES")
    nats_url: str | None = Field(default=None, validation_alias="GATEWAY_NATS_URL")
    # The embedded NATS's monitoring endpoint (/varz, /connz...), which answers anyone who can
    # reach it without credentials: off unless asked for (0: a free loopback port).
    nats_monitor_port: int | None = Field(default=None, ge=0, le=65535, validation_alias="GATEWAY_NATS_MONITOR_PORT")
    drain_seconds: float = Field(default=30.0, ge=0, le=3600, validation_alias="GATEWAY_DRAIN_SECONDS")
    vault_addr: str | None = Field(default=None, validation_alias="VAULT_ADDR")
    vault_token: SecretStr | None = Field(default=None, validation_alias="VAULT_TOKEN")
    clickhouse_dsn: str | None = Field(default=None, validation_alias="GATEWAY_CLICKHOUSE_DSN")
    log_level: str = Field(default="INFO", validation_alias="GATEWAY_LOG_LEVEL")
    # Each process's log under <data dir>/logs rotates past this size, keeping this many files.
    log_max_bytes: int = Field(default=10 << 20, ge=4096, validation_alias="GATEWAY_LOG_MAX_BYTES")
    log_backups: int = Field(default=5, ge=0, le=100, validation_alias="GATEWAY_LOG_BACKUPS")
    ready_timeout: float = Field(default=120.0, gt=0, validation_alias="GATEWAY_READY_TIMEOUT_SECONDS")

    @field_validator("services")
    @classmethod
    def _known_services(cls, value: str) -> str:
        chosen = [name.strip() for name in value.split(",") if name.strip()]
        unknown = set(chosen) - set(ALL_SERVICES)
        if unknown or not chosen:
            raise ValueError(
                f"GATEWAY_SERVICES lists {', '.join(sorted(unknown)) or 'nothing'}; "
                f"choose among {', '.join(ALL_SERVICES)}"
            )
        return ",".join(name for name in ALL_SERVICES if name in chosen)  # start order

    @property
    def service_list(self) -> list[str]:
        return self.services.split(",")

    @property
    def external_vault(self) -> bool:
        return bool(self.vault_addr and self.vault_token and self.vault_token.get_secret_value())
