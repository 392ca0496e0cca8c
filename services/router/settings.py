"""Router settings: the bus, and the operator's overrides of provider base URLs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.catalog import self_hosted_providers
from shared.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    # /healthz and /readyz (0: any free port, logged at start).
    port: int = Field(default=9101, ge=0, le=65535, validation_alias="GATEWAY_ROUTER_PORT")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    gemini_base_url: str | None = Field(default=None, validation_alias="GEMINI_BASE_URL")
    xai_base_url: str | None = Field(default=None, validation_alias="XAI_BASE_URL")
    mistral_base_url: str | None = Field(default=None, validation_alias="MISTRAL_BASE_URL")
    deepseek_base_url: str | None = Field(default=None, validation_alias="DEEPSEEK_BASE_URL")
    groq_base_url: str | None = Field(default=None, validation_alias="GROQ_BASE_URL")
    together_base_url: str | None = Field(default=None, validation_alias="TOGETHER_BASE_URL")
    fireworks_base_url: str | None = Field(default=None, validation_alias="FIREWORKS_BASE_URL")
    openrouter_base_url: str | None = Field(default=None, validation_alias="OPENROUTER_BASE_URL")
    azure_base_url: str | None = Field(default=None, validation_alias="AZURE_BASE_URL")
    vertex_base_url: str | None = Field(default=None, validation_alias="VERTEX_BASE_URL")
    vertex_location: str | None = Field(default=None, validation_alias="VERTEX_LOCATION")
    bedrock_base_url: str | None = Field(default=None, validation_alias="BEDROCK_BASE_URL")
    cohere_base_url: str | None = Field(default=None, validation_alias="COHERE_BASE_URL")
    bedrock_region: str | None = Field(default=None, validation_alias="BEDROCK_REGION")
    azure_api_version: str | None = Field(default=None, validation_alias="AZURE_API_VERSION")
    anthropic_api_version: str | None = Field(default=None, validation_alias="ANTHROPIC_API_VERSION")
    # Self-hosted OpenAI-compatible servers (vLLM, Ollama, llama.cpp): "name=url,name=url";
    # each becomes a provider reached as `name/<model>`, keyless unless an admin adds a key.
    openai_compatible: str = Field(default="", validation_alias="GATEWAY_OPENAI_COMPATIBLE")
    republish_interval: float = Field(default=30.0, validation_alias="GATEWAY_ROUTER_REPUBLISH_SECONDS")
    # The routing configuration file (accounts, virtual models, aliases, deprecations): read at
    # start, re-read when it changes (checked every config_poll_seconds) and on SIGHUP.
    config_path: Path | None = Field(default=None, validation_alias="GATEWAY_CONFIG")
    config_poll_seconds: float = Field(default=1.0, gt=0, le=60, validation_alias="GATEWAY_CONFIG_POLL_SECONDS")
    # A target's circuit opens after this many failed attempts in a row and stays open this long.
    circuit_failures: int = Field(default=5, ge=1, le=1000, validation_alias="GATEWAY_CIRCUIT_FAILURES")
    circuit_open_seconds: float = Field(default=30.0, gt=0, validation_alias="GATEWAY_CIRCUIT_OPEN_SECONDS")
    # How long an admin change waits for every live edge to confirm it.
    sync_timeout: float = Field(default=3.0, gt=0, le=30, validation_alias="GATEWAY_SYNC_TIMEOUT_SECONDS")

    def api_versions(self) -> dict[str, str]:
        """The API versions the operator set, by provider (Azure's api-version, Anthropic's
        anthropic-version); the catalog's apply to the rest."""
        chosen = {"azure": self.azure_api_version, "anthropic": self.anthropic_api_version}
        return {provider: version for provider, version in chosen.items() if version}

    def locations(self) -> dict[str, str]:
        """The locations the operator set, by provider (Vertex AI's location, Bedrock's region)."""
        chosen = {"vertex": self.vertex_location, "bedrock": self.bedrock_region}
        return {provider: location for provider, location in chosen.items() if location}

    def self_hosted(self) -> dict[str, str]:
        return self_hosted_providers(self.openai_compatible)

    def base_url_overrides(self) -> dict[str, str]:
        """``{provider: base_url}`` for every ``<PROVIDER>_BASE_URL`` that is set."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if name.endswith("_base_url") and value:
                out[name.removesuffix("_base_url")] = str(value).rstrip("/")
        return out
