"""Request-reply messages between the edge and the services behind it.

Every reply is a :class:`Reply` envelope: ``ok`` with ``data``, or an OpenAI-shaped error
and its HTTP status, so an error raised in a service reaches the client unchanged.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from shared.cost import PriceSpec
from shared.errors import ErrorBody
from shared.gateway_config import Account, VirtualModel
from shared.limits import BudgetPeriod, LimitFields, Scope


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


PROVIDER_KEY_CREATE_CONTEXT = b"switchyard provider key create v1"
# What the responses key is sealed to an edge under (SealedProviderKeys.responses_key).
RESPONSES_KEY_CONTEXT = b"switchyard responses key v1"


class ProviderKeyCreateSealed(BaseModel):
    """An admin's new provider key on its way to keyvault: sealed to keyvault's transport key,
    so the secret never crosses the bus in plaintext."""

    provider: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1, max_length=128)
    sealed_api_key: str = Field(min_length=1, max_length=16384)


class ProviderKeyPatch(BaseModel):
    status: Literal["active", "disabled"]


class ProviderKeyStatusChange(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    status: Literal["active", "disabled", "invalid"]
    reason: str = Field(default="", max_length=512)


class KeysLastUsed(BaseModel):
    last_used: dict[str, float]


class TransportKey(BaseModel):
    public_key: str


class ProviderKeyInfo(BaseModel):
    """What an admin may see of a provider key: never the secret."""

    id: str
    provider: str
    label: str
    fingerprint: str
    created_at: float
    status: Literal["active", "disabled", "invalid"] = "active"
    status_reason: str = ""
    status_since: float | None = None  # when the status last changed
    last_used_at: float | None = None
    source: Literal["api", "env"] = "api"


class EncryptionRotated(BaseModel):
    key_version: int
    rewrapped: int


class ProviderKeyList(BaseModel):
    data: list[ProviderKeyInfo]


class Empty(BaseModel):
    """A request or announcement that carries nothing (a ping, a change event)."""


class ById(BaseModel):
    id: str = Field(min_length=1, max_length=128)


class ByName(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class ByUser(BaseModel):
    name: str = Field(min_length=1, max_length=256)


class ProviderKeyFetch(BaseModel):
    """An edge asks for the provider keys, sealed to its ephemeral X25519 public key, signed by
    its identity (shared/identity.py): the identity's Ed25519 public key and the signature
    over ``public_key``, ``edge_instance`` and ``issued_at``."""

    public_key: str
    edge_instance: str = Field(max_length=256)
    identity: str = ""
    issued_at: float = 0.0
    signature: str = ""


class SealedProviderKey(BaseModel):
    id: str
    provider: str
    sealed: str


class RefusedProviderKey(BaseModel):
    """A key out of service because the provider refused it: why and since when, no secret."""

    id: str
    provider: str
    reason: str
    since: float


class SealedProviderKeys(BaseModel):
    keys: list[SealedProviderKey]
    refused: list[RefusedProviderKey] = []
    # The AES-256 key stored Responses API turns are encrypted with, sealed like the provider
    # keys ("" while keyvault has not loaded it from Vault).
    responses_key: str = ""


# --- client keys ---------------------------------------------------------------------------


ModelPatterns = list[Annotated[str, Field(min_length=1, max_length=256)]]
PROJECT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
LimitField = Literal["rpm", "tpm", "max_parallel", "budget_usd", "budget_period"]
ClearableKeyField = Literal[
    "expires_at", "allowed_models", "project", "rpm", "tpm", "max_parallel", "budget_usd", "budget_period"
]


class BudgetStatus(BaseModel):
    """A budget this period: what was spent (metered, or settled by edges and not metered
    yet), what edges hold reserved or leased for requests, and what is left."""

    scope: Scope
    id: str
    limit_usd: float
    period: BudgetPeriod
    spent_usd: float
    reserved_usd: float
    remaining_usd: float
    period_start: float
    resets_at: float | None  # None for a total budget


class BudgetSpentQuery(BaseModel):
    """What a scope spent from ``start`` on, as metered (an edge opening a budget counter)."""

    scope: Scope
    ident: str = Field(min_length=1, max_length=256)
    start: float = Field(ge=0)


class QuotaReclaim(BaseModel):
    """Hand back the unused part of your lease on this counter."""

    bucket: str
    key: str
    origin: str


class QuotaReturned(BaseModel):
    instance: str
    returned: float = 0.0


class BudgetSpent(BaseModel):
    spent_usd: float


class UserLimits(LimitFields):
    """A user's limits (every key of the user counts against them), set with PUT /ai/users/{name}."""

    model_config = ConfigDict(extra="forbid")


class UserLimitsPut(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    limits: UserLimits


class UserRecord(LimitFields):
    name: str
    object: Literal["user"] = "user"
    updated_at: float
    budget: BudgetStatus | None = None


class UserList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UserRecord]


class ClientKeyCreate(LimitFields):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=256)
    name: str = Field(default="default", min_length=1, max_length=256)
    description: str = Field(default="", max_length=1024)
    project: str | None = Field(default=None, pattern=PROJECT_NAME, description="a project made with /ai/projects")
    expires_at: float | None = Field(default=None, gt=0, description="seconds since the epoch")
    allowed_models: ModelPatterns | None = Field(
        default=None, max_length=256, description="model names or glob patterns this key may call"
    )


class ClientKeyPatch(LimitFields):
    """What ``PATCH /ai/keys/{id}`` may change; a field left out stays as it is, and ``null``
    clears ``expires_at``, ``allowed_models``, ``project`` or a limit."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=256)
    description: str | None = Field(default=None, max_length=1024)
    project: str | None = Field(default=None, pattern=PROJECT_NAME)
    expires_at: float | None = Field(default=None, gt=0)
    allowed_models: ModelPatterns | None = Field(default=None, max_length=256)
    status: Literal["active", "disabled"] | None = None


class ClientKeyPatchRequest(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    patch: ClientKeyPatch
    cleared: list[ClearableKeyField] = []


class ClientKeyRecord(LimitFields):
    """What the client-keys KV bucket holds per key: the hash, never the secret."""

    id: str
    key_hash: str
    prefix: str
    user: str
    name: str
    created_at: float
    status: Literal["active", "disabled", "revoked"] = "active"
    expires_at: float | None = None
    allowed_models: list[str] | None = None
    description: str = ""
    project: str | None = None


class ClientKeyInfo(LimitFields):
    id: str
    object: Literal["api_key"] = "api_key"
    user: str
    name: str
    prefix: str
    created_at: float
    status: str  # active, disabled, expired (revoked keys are deleted)
    expires_at: float | None = None
    allowed_models: list[str] | None = None
    description: str = ""
    project: str | None = None
    budget: BudgetStatus | None = None  # the key's own budget this period, where it has one


class ClientKeyCreated(ClientKeyInfo):
    key: str


# What the secret of a new client key is sealed under on its way back to the edge.
CLIENT_KEY_REPLY_CONTEXT = b"switchyard client key created v1"


class ClientKeyCreateSealed(BaseModel):
    """The edge asks keyvault for a new key; the secret comes back sealed to ``seal_to``, an
    ephemeral X25519 key of that one request: replies to edges cross the bus where anyone with
    the edges' NATS credentials reads them."""

    create: ClientKeyCreate
    seal_to: str


class ClientKeyCreatedSealed(ClientKeyInfo):
    sealed_key: str


class ClientKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ClientKeyInfo]


# --- usage ---------------------------------------------------------------------------------

PERIOD_SECONDS = {"24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}


class UsageFilter(BaseModel):
    """Which usage: a period back from now, or ``start``/``end``; and optional filters."""

    period: Literal["24h", "7d", "30d"] | None = None
    start: float | None = Field(default=None, ge=0)
    end: float | None = Field(default=None, ge=0)
    user: str | None = None
    client_key_id: str | None = None
    model: str | None = None
    provider: str | None = None

    def window(self, now: float) -> tuple[float, float]:
        end = self.end if self.end is not None else now
        if self.start is not None:
            start = self.start
        else:
            start = max(end - PERIOD_SECONDS[self.period or "7d"], 0.0)  # never before the epoch
        return start, end


class TokenCounts(BaseModel):
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0


class ModelUsage(TokenCounts):
    model: str
    provider: str
    # Requests whose tokens were costed at $0 because the model had no price (the catalog's
    # or an admin's) when they were metered; price_missing says there were any.
    unpriced_requests: int = 0
    price_missing: bool = False


class ProviderUsage(TokenCounts):
    provider: str


class UserUsage(TokenCounts):
    user: str


class PriceVersionUsage(BaseModel):
    """The requests that consumed tokens costed at one price version (after any re-costing),
    and their cost."""

    version: str
    requests: int
    cost_usd: float


class UsageSummary(BaseModel):
    object: Literal["usage.summary"] = "usage.summary"
    period: str
    start: float
    end: float
    total_requests: int
    total_errors: int
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_cost_usd: float
    # Requests costed at $0 for want of a price: total_cost_usd leaves them out.
    unpriced_requests: int = 0
    # What re-costing changed (services/metering/recost.py), included in total_cost_usd.
    corrections_usd: float = 0.0
    by_model: list[ModelUsage]
    by_provider: list[ProviderUsage]
    by_user: list[UserUsage]
    by_price_version: list[PriceVersionUsage] = []


class RecostQuery(BaseModel):
    """``POST /ai/usage/recost``: re-price the stored usage of a window at today's prices."""

    start: float = Field(ge=0, validation_alias=AliasChoices("start", "from"))
    end: float = Field(ge=0, validation_alias=AliasChoices("end", "to"))
    model: str | None = Field(default=None, max_length=256)
    provider: str | None = Field(default=None, max_length=64)
    user: str | None = Field(default=None, max_length=256)
    dry_run: bool = False
    correction_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _moment(cls, value: Any) -> Any:
        """Seconds since the epoch, or an ISO 8601 time (UTC unless it says)."""
        if isinstance(value, str):
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                return value  # not a time: the float check says so
            return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
        return value


class RecostReport(BaseModel):
    object: Literal["usage.recost"] = "usage.recost"
    correction_id: str
    dry_run: bool
    events_checked: int
    events_corrected: int
    delta_usd: float


GroupBy = Literal["model", "provider", "user", "project"]


class TimeseriesQuery(UsageFilter):
    granularity: Literal["hour", "day"] = "hour"
    group_by: GroupBy | None = None


class TimeseriesPoint(TokenCounts):
    start: float


class TimeseriesSeries(BaseModel):
    key: str  # the model, provider, user or project
    data: list[TimeseriesPoint]


class UsageTimeseries(BaseModel):
    object: Literal["usage.timeseries"] = "usage.timeseries"
    granularity: str
    start: float
    end: float
    data: list[TimeseriesPoint]  # all requests together
    group_by: GroupBy | None = None
    series: list[TimeseriesSeries] = Field(default_factory=list)  # one per group, with group_by


class Percentiles(BaseModel):
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0


class Performance(BaseModel):
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0  # errors / requests (status >= 400)
    latency_ms: Percentiles = Field(default_factory=Percentiles)  # in the gateway, upstream included
    ttft_ms: Percentiles = Field(default_factory=Percentiles)  # successful streams only
    overhead_ms: Percentiles = Field(default_factory=Percentiles)  # latency minus upstream time


class ModelPerformance(Performance):
    model: str
    provider: str


class UsagePerformance(BaseModel):
    object: Literal["usage.performance"] = "usage.performance"
    start: float
    end: float
    total: Performance
    by_model: list[ModelPerformance]


class RequestsQuery(UsageFilter):
    limit: int = Field(default=50, ge=1, le=1000)
    before: str | None = Field(default=None, max_length=512, description="cursor from a previous page")
    status: int | None = Field(default=None, ge=100, le=599)


class RequestLogEntry(BaseModel):
    id: str
    ts: float
    user: str
    client_key_id: str
    request_user: str
    requested_model: str
    model: str
    provider: str
    provider_key_id: str
    endpoint: str
    stream: bool
    status: int
    error_type: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int
    usage_estimated: bool
    cost_usd: float
    price_version: str
    ttft_ms: float
    latency_ms: float
    upstream_latency_ms: float
    edge_instance: str
    routing_decision_id: str
    attempts: int
    provider_account: str
    request_id: str = ""  # the x-request-id the client got (the client's own, if it sent one)
    trace_id: str = ""


class RequestLog(BaseModel):
    object: Literal["list"] = "list"
    data: list[RequestLogEntry]
    has_more: bool
    next_cursor: str | None = None


class PriceIn(BaseModel):
    """An admin's price for a model, effective from a time (default: now)."""

    model: str = Field(min_length=1, max_length=256)
    provider: str | None = Field(default=None, min_length=1, max_length=64)
    input: float = Field(ge=0, le=100_000)
    output: float = Field(ge=0, le=100_000)
    cached_input: float | None = Field(default=None, ge=0, le=100_000)
    cache_write: float | None = Field(default=None, ge=0, le=100_000)
    cache_write_1h: float | None = Field(default=None, ge=0, le=100_000)
    reasoning: float | None = Field(default=None, ge=0, le=100_000)
    effective_from: float | None = Field(default=None, ge=0)


class PriceOut(PriceSpec):
    """A price in force (rates as the dataset writes them: a number, or a base with tiers)."""

    provider: str
    model: str
    effective_from: float
    version: str
    source: str


class PriceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PriceOut]


class CatalogLoad(BaseModel):
    """``POST /ai/catalog``: a newer pricing dataset, prices, or models allowed unpriced.

    ``dataset`` is a genai-prices ``data.json`` (a list of providers), or a Switchyard
    ``catalog_prices.json`` (what ``make catalog`` writes). Its prices for the catalog's
    providers take effect at ``effective_from`` (default: now), for every model whose price
    it changes; earlier requests keep the prices they were costed at (re-cost them with
    ``python -m services.metering.recost``)."""

    dataset: list[Any] | dict[str, Any] | None = None
    prices: list[PriceIn] = Field(default_factory=list, max_length=1000)
    allow_unpriced: list[str] | None = Field(
        default=None, max_length=1000, description="models (or provider/model) budgets admit with no price"
    )
    version: str | None = Field(default=None, min_length=1, max_length=100)
    effective_from: float | None = Field(default=None, ge=0)


class CatalogLoaded(BaseModel):
    version: str
    effective_from: float
    changed: list[str]  # provider/model of each price that took effect (GET /ai/prices shows them)
    unchanged: int  # models whose price the load left as it was
    allow_unpriced: list[str]


class PricesInForce(BaseModel):
    """What every edge holds of the prices set at run time (metering's, in the prices
    bucket): each model's price in force and any to come, and the models allowed unpriced."""

    prices: list[PriceOut] = []
    allow_unpriced: list[str] = []


class MeteringStatus(BaseModel):
    inserted: int
    duplicates_skipped: int
    dead_lettered: int
    dead_letter_stream_messages: int
    pending: int
    usage_stream_messages: int  # events not yet stored (the stream drops them once stored)
    clickhouse: bool


class AuditQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000)
    action: str | None = Field(default=None, max_length=256)
    actor: str | None = Field(default=None, max_length=256)


class AuditEntry(BaseModel):
    id: str
    ts: float
    actor: str
    actor_user: str
    action: str
    target: str
    status: int
    source: str
    instance: str


class AuditLog(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditEntry]


# --- projects ---------------------------------------------------------------------------------


class ProjectCreate(LimitFields):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PROJECT_NAME)
    description: str = Field(default="", max_length=1024)


class ProjectPatch(LimitFields):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=1024)


class ProjectPatchRequest(BaseModel):
    name: str = Field(pattern=PROJECT_NAME)
    patch: ProjectPatch
    cleared: list[LimitField] = []


class Project(LimitFields):
    name: str
    object: Literal["project"] = "project"
    description: str = ""
    created_at: float
    budget: BudgetStatus | None = None  # this period's spend, where the project has a budget


class ProjectList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Project]


# --- routing configuration, health, and read-your-writes ------------------------------------


class RouteObject(BaseModel):
    """A virtual model as the admin API shows it: where it is defined, and its spec."""

    name: str
    object: Literal["route"] = "route"
    source: Literal["file", "api"]
    spec: VirtualModel


class RoutePut(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    spec: VirtualModel


class AccountObject(BaseModel):
    name: str
    object: Literal["account"] = "account"
    source: Literal["file", "api"]
    spec: Account


class AccountPut(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    spec: Account


class ConfigObjects(BaseModel):
    object: Literal["list"] = "list"
    data: list[RouteObject] | list[AccountObject]
    config_file: str = ""
    config_error: str = ""  # the file's last refused version, if any


class TargetOutcomes(BaseModel):
    """What one edge saw of one target since its last report."""

    ok: int = 0
    failed: int = 0
    last_failure: str = ""
    ttft_ms_sum: float = 0.0
    ttft_count: int = 0


class HealthReport(BaseModel):
    """An edge's periodic report (also its heartbeat): outcomes per target."""

    instance: str
    targets: dict[str, TargetOutcomes] = {}
    leaving: bool = False  # the edge is shutting down: do not wait for it to confirm changes


SyncKind = Literal["routes", "client_keys", "provider_keys", "projects", "users", "prices"]


class SyncRequest(BaseModel):
    kind: SyncKind


class SyncAck(BaseModel):
    instance: str
    ok: bool = True
    detail: str = ""


class SyncResult(BaseModel):
    """Which live edges confirmed that they apply the change."""

    kind: SyncKind
    confirmed: list[str]
    missing: list[str]


class ServiceBeat(BaseModel):
    """A service process saying it is alive (shared/heartbeat.py)."""

    service: str
    instance: str
    version: str
    host: str = ""
    pid: int = 0
    started_at: float  # seconds since the epoch
    sent_at: float
    ready: bool = True  # connected to what it needs (its own view; /readyz has the detail)
