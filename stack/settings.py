"""Launcher settings: the operator contract's environment (see README)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = Field(default="127.0.0.1", validation_alias="GATEWAY_HOST")
    port: int = Field(default=8080, ge=0, le=65535, validation_alias="GATEWAY_PORT")
    data_dir: Path = Field(default=Path(".data"), validation_alias="GATEWAY_DATA_DIR")
    admin_key: SecretStr | None = Field(default=None, validation_alias="GATEWAY_ADMIN_KEY")
    edge_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=64, validation_alias="GATEWAY_EDGE_WORKERS"
    )
    nats_url: str | None = Field(default=None, validation_alias="GATEWAY_NATS_URL")
    vault_addr: str | None = Field(default=None, validation_alias="VAULT_ADDR")
    vault_token: SecretStr | None = Field(default=None, validation_alias="VAULT_TOKEN")
    clickhouse_dsn: str | None = Field(default=None, validation_alias="GATEWAY_CLICKHOUSE_DSN")
    log_level: str = Field(default="INFO", validation_alias="GATEWAY_LOG_LEVEL")
    ready_timeout: float = Field(default=120.0, gt=0, validation_alias="GATEWAY_READY_TIMEOUT_SECONDS")

    @property
    def external_vault(self) -> bool:
        return bool(self.vault_addr and self.vault_token and self.vault_token.get_secret_value())
