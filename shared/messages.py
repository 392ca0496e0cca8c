"""Request-reply messages between the edge and the services behind it.

Every reply is a :class:`Reply` envelope: ``ok`` with ``data``, or an OpenAI-shaped error
and its HTTP status, so an error raised in a service reaches the client unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.errors import ErrorBody


class Reply(BaseModel):
    ok: bool
    data: Any = None
    status: int = 200
    error: ErrorBody | None = None


class Ping(BaseModel):
    service: str
    instance: str


class CatalogListing(BaseModel):
    object: Literal["list"] = "list"
    catalog_version: str
    data: list[dict[str, Any]]


# --- provider keys -------------------------------------------------------------------------


class ProviderKeyCreate(BaseModel):
    provider: str = Field(min_length=1, max_length=64)
    api_key: str = Field(min_length=1, max_length=8192)
    label: str = Field(default="default", min_length=1, max_length=128)


class ProviderKeyInfo(BaseModel):
    """What an admin may see of a provider key: never the secret."""

    id: str
    provider: str
    label: str
    fingerprint: str
    created_at: float
    status: Literal["active", "disabled"] = "active"
    source: Literal["api", "env"] = "api"


class ProviderKeyList(BaseModel):
    data: list[ProviderKeyInfo]


class ById(BaseModel):
    id: str = Field(min_length=1, max_length=128)


class ProviderKeyFetch(BaseModel):
    """An edge asks for the provider keys, sealed to its ephemeral X25519 public key."""

    public_key: str
    edge_instance: str


class SealedProviderKey(BaseModel):
    id: str
    provider: str
    sealed: str


class SealedProviderKeys(BaseModel):
    keys: list[SealedProviderKey]


# --- client keys ---------------------------------------------------------------------------


class ClientKeyCreate(BaseModel):
    user: str = Field(min_length=1, max_length=256)
    name: str = Field(default="default", min_length=1, max_length=256)


class ClientKeyRecord(BaseModel):
    """What the client-keys KV bucket holds per key: the hash, never the secret."""

    id: str
    key_hash: str
    prefix: str
    user: str
    name: str
    created_at: float
    status: Literal["active", "revoked"] = "active"


class ClientKeyInfo(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    user: str
    name: str
    prefix: str
    created_at: float
    status: str


class ClientKeyCreated(ClientKeyInfo):
    key: str


class ClientKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ClientKeyInfo]


# --- usage ---------------------------------------------------------------------------------


class UsageSummaryQuery(BaseModel):
    period: Literal["24h", "7d", "30d"] = "7d"
    user: str | None = None


class UsageGroup(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class ModelUsage(UsageGroup):
    model: str


class ProviderUsage(UsageGroup):
    provider: str


class UserUsage(UsageGroup):
    user: str


class UsageSummary(BaseModel):
    object: Literal["usage.summary"] = "usage.summary"
    period: str
    start: float
    end: float
    total_requests: int
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    total_cost_usd: float
    by_model: list[ModelUsage]
    by_provider: list[ProviderUsage]
    by_user: list[UserUsage]
