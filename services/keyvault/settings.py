"""Keyvault settings: the bus, Vault, and provider keys to import from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class KeyvaultSettings(ServiceSettings):
    # /healthz and /readyz (0: any free port, logged at start).
    port: int = Field(default=9102, ge=0, le=65535, validation_alias="GATEWAY_KEYVAULT_PORT")
    vault_addr: str = Field(default="http://127.0.0.1:8200", validation_alias="VAULT_ADDR")
    vault_token: SecretStr = Field(default=SecretStr(""), validation_alias="VAULT_TOKEN")
    # Production: AppRole instead of a static token (the token is then obtained and renewed).
    vault_role_id: str | None = Field(default=None, validation_alias="VAULT_ROLE_ID")
    vault_secret_id: SecretStr | None = Field(default=None, validation_alias="VAULT_SECRET_ID")
    # A directory holding the AppRole's `role_id` and `secret_id` files (docker compose's
    # openbao-init writes them; a Kubernetes Secret mounted as files works the same way).
    vault_approle_dir: Path | None = Field(default=None, validation_alias="GATEWAY_VAULT_APPROLE_DIR")
    vault_approle_mount: str = Field(default="approle", validation_alias="VAULT_APPROLE_MOUNT")
    vault_transit_mount: str = Field(default="transit", validation_alias="GATEWAY_VAULT_TRANSIT_MOUNT")
    vault_transit_key: str = Field(default="switchyard-provider-keys", validation_alias="GATEWAY_VAULT_TRANSIT_KEY")
    vault_kv_mount: str = Field(default="switchyard", validation_alias="GATEWAY_VAULT_KV_MOUNT")

    # Provider keys found in the environment at start are imported into Vault once.
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    gemini_api_key: SecretStr | None = Field(default=None, validation_alias="GEMINI_API_KEY")
    xai_api_key: SecretStr | None = Field(default=None, validation_alias="XAI_API_KEY")
    mistral_api_key: SecretStr | None = Field(default=None, validation_alias="MISTRAL_API_KEY")
    deepseek_api_key: SecretStr | None = Field(default=None, validation_alias="DEEPSEEK_API_KEY")
    groq_api_key: SecretStr | None = Field(default=None, validation_alias="GROQ_API_KEY")
    together_api_key: SecretStr | None = Field(default=None, validation_alias="TOGETHER_API_KEY")
    fireworks_api_key: SecretStr | None = Field(default=None, validation_alias="FIREWORKS_API_KEY")
    openrouter_api_key: SecretStr | None = Field(default=None, validation_alias="OPENROUTER_API_KEY")
    azure_api_key: SecretStr | None = Field(default=None, validation_alias="AZURE_API_KEY")
    # Vertex AI's key is a service account's JSON key (the file's content).
    vertex_api_key: SecretStr | None = Field(default=None, validation_alias="VERTEX_SERVICE_ACCOUNT")
    # Bedrock's: a Bedrock API key, or an access key as AKID:SECRET[:SESSION_TOKEN].
    bedrock_api_key: SecretStr | None = Field(default=None, validation_alias="BEDROCK_API_KEY")
    cohere_api_key: SecretStr | None = Field(default=None, validation_alias="COHERE_API_KEY")

    # Keyvault's registry of edge identities: one `<name>.pub` (an Ed25519 public key, PEM) per
    # identity allowed to receive provider keys (shared/identity.py). Read on every fetch.
    edge_identities_dir: Path | None = Field(default=None, validation_alias="GATEWAY_EDGE_IDENTITIES_DIR")

    # How often keys a provider refused (401/403) are tried again (a model listing).
    key_probe_seconds: float = Field(default=60.0, gt=0, validation_alias="GATEWAY_KEY_PROBE_SECONDS")

    # How long a stored Responses API response lives (30 days, as OpenAI keeps them).
    responses_ttl_seconds: float = Field(default=30 * 86400, gt=0, validation_alias="GATEWAY_RESPONSES_TTL_SECONDS")

    # The operator's self-hosted servers may take keys too (vLLM --api-key).
    openai_compatible: str = Field(default="", validation_alias="GATEWAY_OPENAI_COMPATIBLE")

    def approle(self) -> tuple[str, str] | None:
        """The AppRole login (role_id, secret_id), from the variables or the directory."""
        if self.vault_approle_dir is not None:
            role_id = (self.vault_approle_dir / "role_id").read_text().strip()
            secret_id = (self.vault_approle_dir / "secret_id").read_text().strip()
            return (role_id, secret_id) if role_id and secret_id else None
        if self.vault_role_id and self.vault_secret_id and self.vault_secret_id.get_secret_value():
            return self.vault_role_id, self.vault_secret_id.get_secret_value()
        return None

    def env_provider_keys(self) -> dict[str, SecretStr]:
        out: dict[str, SecretStr] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_api_key") and value is not None and value.get_secret_value():
                out[name.removesuffix("_api_key")] = value
        return out
