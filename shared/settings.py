"""The settings base every service builds on."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common to every service: where the bus is and where local data lives."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="GATEWAY_NATS_URL")
    data_dir: Path = Field(default=Path(".data"), validation_alias="GATEWAY_DATA_DIR")
    log_level: str = Field(default="INFO", validation_alias="GATEWAY_LOG_LEVEL")
