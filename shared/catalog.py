"""The model catalog and the route table compiled from it.

The catalog is the pricing dataset's models and prices (``catalog_prices.json``, made from
genai-prices by ``make catalog``) under Switchyard's overlay (``catalog.toml``: providers,
routing, families, dates, successors, capabilities); shared/catalog_build.py merges them.

The router compiles the catalog, the operator's base-URL overrides and the routing
configuration (accounts, virtual models, aliases, deprecations; ``shared.gateway_config``)
into a :class:`RouteTable`, publishes it to a KV bucket with each target's circuit state, and
every edge resolves model names against its local copy with :meth:`RouteTable.plan`.
"""

from __future__ import annotations

import fnmatch
import logging
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from shared.cost import PriceSpec, rate_at
from shared.gateway_config import RetryPolicy, Strategy, Timeouts, VirtualModel
from shared.price_dataset import matches

CATALOG_PATH = Path(__file__).with_name("catalog.toml")
PRICES_PATH = Path(__file__).with_name("catalog_prices.json")

log = logging.getLogger("switchyard.catalog")


class ProviderConfig(BaseModel):
    api: str = Field(description="wire API: openai, anthropic, gemini, echo")
    base_url: str
    auth_header: str = "authorization"
    auth_scheme: str = "Bearer"
    key_env: str = ""
    requires_key: bool = True
    prefixes: list[str] = []
    api_version: str = ""  # Azure OpenAI's api-version query parameter; Anthropic's anthropic-version
    account_of: str = ""  # set for a named account: the catalog provider whose models it serves
    location: str = ""  # Vertex AI's location (global, us-central1, ...)
    dataset: str = ""  # the pricing dataset's id of this provider (google for gemini)


class ModelEntry(PriceSpec):
    """A catalog model: where it routes, what it can do, and its price in force (rates None
    when nobody priced it: then no budget admits it, shared.pricing_policy)."""

    provider: str
    upstream_model: str | None = None
    capabilities: tuple[str, ...] = ()  # a tuple, so each Route shares it as it is
    family: str = ""  # e.g. claude-sonnet: the family alias names the newest stable member
    released: date | None = None
    retired: date | None = None  # from this day on, requests go to the successor
    successor: str | None = None
    context_window: int | None = None
    max_output: int | None = None
    name: str = ""  # the provider's display name
    deprecated: bool = False  # the dataset says the provider deprecated it (give it a retirement day)
    match: dict[str, object] | None = None  # the dataset's rule for the names it goes by
    price_source: str = ""  # the dataset version, or why the overlay prices it
    price_since: date | None = None  # the day its price took effect
    price_version: str = ""


class Deprecation(BaseModel):
    """A model name the provider retired (or the operator deprecated) and where it goes now."""

    successor: str
    retired: date | None = None


class PastPrice(PriceSpec):
    """A price a model had before the catalog's current one (USD per million tokens)."""

    model: str
    provider: str
    effective_from: date
    version: str


class Family(BaseModel):
    """Catalog ids (globs) whose newest released member the family's name stands for."""

    provider: str
    match: list[str]
    exclude: list[str] = []
    pin: str = ""  # a name the provider gives its current member (matched by the dataset's rules)


class Catalog(BaseModel):
    version: str
    dataset: str = ""  # the pricing dataset the prices come from
    prices_effective_from: date = date(2024, 1, 1)
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelEntry]
    aliases: dict[str, str] = {}
    families: dict[str, Family] = {}
    deprecated: dict[str, Deprecation] = {}  # retired names that are no longer catalog models
    price_history: list[PastPrice] = []
    stream_timeouts: Timeouts = Timeouts(first_token_seconds=120, idle_seconds=120, total_seconds=3600)


def self_hosted_providers(spec: str) -> dict[str, str]:
    """``{name: base_url}`` from ``GATEWAY_OPENAI_COMPATIBLE`` (``name=url,name=url``): the
    operator's own OpenAI-compatible servers. Router and keyvault both read it."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        name, sep, url = item.strip().partition("=")
        if not item.strip():
            continue
        if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
            raise ValueError(f"GATEWAY_OPENAI_COMPATIBLE entry {item!r} is not name=http(s)://url")
        out[name.strip()] = url.strip().rstrip("/")
    return out


def load_overlay(path: Path = CATALOG_PATH) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def load_catalog(path: Path = CATALOG_PATH, prices: Path = PRICES_PATH) -> Catalog:
    """The shipped catalog: the overlay over the dataset file ``make catalog`` wrote."""
    from shared.catalog_build import merge
    from shared.price_dataset import Dataset

    return merge(load_overlay(path), Dataset.model_validate_json(prices.read_bytes()))


class Route(BaseModel):
    """Where one request goes: one target."""

    model: str  # the canonical model name (catalog id, or as requested when not in catalog)
    provider: str  # the provider or named account whose base URL and keys are used
    upstream_model: str
    capabilities: tuple[str, ...] = ()  # the catalog's, for a catalog model; none known otherwise
    catalog_provider: str = ""  # the provider of the catalog (prices); equals provider but for accounts

    @property
    def target(self) -> str:
        """The target's name in circuit state and health reports."""
        return f"{self.provider}/{self.upstream_model}"

    @property
    def billed_provider(self) -> str:
        return self.catalog_provider or self.provider

    @property
    def account(self) -> str:
        """The named account this target belongs to; "" for a provider's own."""
        return self.provider if self.catalog_provider and self.catalog_provider != self.provider else ""


CircuitState = Literal["closed", "open", "half_open"]


class Circuit(BaseModel):
    """What every edge knows of one target's health (kept by the router from edge reports)."""

    state: CircuitState = "closed"
    since: float = 0.0  # when the state began (epoch seconds)
    reason: str = ""  # the last failure that counted
    ttft_ms: float | None = None  # the measured time to first token (moving average)


@dataclass(frozen=True)
class Plan:
    """How to serve a model name: the targets in declared order and the policy."""

    requested: str  # as the client sent it
    model: str  # after aliases and deprecations: a virtual model or the single target's model
    targets: tuple[Route, ...]
    strategy: Strategy = "fallback"
    weights: tuple[float, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    successor: str | None = None  # the requested name is retired; this is what serves it
    virtual: bool = False
    # ``provider/model`` as pinned (after aliases) when the request names a provider or account
    # other than the one the model's own name routes to; None otherwise. A key's
    # ``allowed_models`` must allow this name: allowing a model is not allowing every provider
    # and account that can serve it.
    pinned: str | None = None


_SINGLE = VirtualModel(targets=["-"])  # the policy of a name that is not a virtual model


class RouteTable(BaseModel):
    """The compiled, self-contained routing data every edge holds in memory."""

    revision: int = 0
    catalog_version: str
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelEntry]
    aliases: dict[str, str]
    virtual: dict[str, VirtualModel] = {}
    deprecated: dict[str, Deprecation] = {}
    circuits: dict[str, Circuit] = {}
    stream_timeouts: Timeouts = Timeouts()
    _plans: dict[str, Plan | None] = PrivateAttr(default_factory=dict)  # the table never changes

    def resolve(self, name: str) -> Route | None:
        """Route ``name`` to one target: catalog id or alias, ``provider/model`` pinning (a
        provider or a named account), then prefixes."""
        name = self.aliases.get(name, name)
        entry = self.models.get(name)
        if entry is not None:
            upstream = entry.upstream_model or name
            return Route(
                model=name,
                provider=entry.provider,
                upstream_model=upstream,
                capabilities=entry.capabilities,
                catalog_provider=entry.provider,
            )
        provider, sep, rest = name.partition("/")
        cfg = self.providers.get(provider) if sep and rest else None
        if cfg is not None:
            base = cfg.account_of or provider
            rest = self.aliases.get(rest, rest)
            pinned = self.models.get(rest)
            if pinned is not None and pinned.provider == base:
                return Route(
                    model=rest,
                    provider=provider,
                    upstream_model=pinned.upstream_model or rest,
                    capabilities=pinned.capabilities,
                    catalog_provider=base,
                )
            return Route(model=rest, provider=provider, upstream_model=rest, catalog_provider=base)
        for pname, pcfg in self.providers.items():
            for pattern in pcfg.prefixes:
                if fnmatch.fnmatchcase(name, pattern):
                    known = self._matched(pname, name)
                    if known is not None:  # a dated or spelled-out name of a catalog model
                        return Route(
                            model=known,
                            provider=pname,
                            upstream_model=name,
                            capabilities=self.models[known].capabilities,
                            catalog_provider=pname,
                        )
                    return Route(model=name, provider=pname, upstream_model=name, catalog_provider=pname)
        return None

    def _matched(self, provider: str, name: str) -> str | None:
        """The catalog model of ``provider`` whose dataset match rule fits ``name``
        (``claude-opus-4-8-20261105`` is ``claude-opus-4-8``), for its price and capabilities."""
        for model, entry in self.models.items():
            if entry.provider == provider and entry.match is not None and matches(entry.match, name):
                return model
        return None

    def successor(self, name: str) -> str | None:
        """Where a retired or deprecated name goes now, else None."""
        gone = self.deprecated.get(name)
        if gone is not None:
            return gone.successor
        entry = self.models.get(name)
        return entry.successor if entry is not None and entry.retired is not None else None

    def canonical(self, name: str) -> tuple[str, str | None]:
        """The name after aliases and deprecations, and the successor if the name was retired."""
        successor = None
        for _ in range(8):  # alias -> retired -> successor chains are short; never loop
            aliased = self.aliases.get(name, name)
            after = self.successor(aliased)
            if after is None:
                return aliased, successor
            name = successor = after
        return name, successor

    def plan(self, requested: str) -> Plan | None:
        """How to serve ``requested``: a virtual model's targets and policy, or one target."""
        try:
            return self._plans[requested]
        except KeyError:
            pass
        plan = self._plan(requested)
        if len(self._plans) < 10_000:  # names clients invent are not kept without bound
            self._plans[requested] = plan
        return plan

    def _plan(self, requested: str) -> Plan | None:
        name, successor = self.canonical(requested)
        virtual = self.virtual.get(name)
        if virtual is None:
            route = self.resolve(name)
            if route is None:
                return None
            return Plan(
                requested=requested,
                model=route.model,
                targets=(route,),
                timeouts=_SINGLE.timeouts.over(self.stream_timeouts),
                successor=successor,
                pinned=name if self._pins(name, route) else None,
            )
        targets = tuple(r for r in (self.resolve(self.canonical(t)[0]) for t in virtual.targets) if r is not None)
        return Plan(
            requested=requested,
            model=name,
            targets=targets,
            strategy=virtual.strategy,
            weights=tuple(virtual.weights or ()),
            retry=virtual.retry,
            timeouts=virtual.timeouts.over(self.stream_timeouts),
            successor=successor,
            virtual=True,
        )

    def _pins(self, name: str, route: Route) -> bool:
        """Whether ``name`` reached ``route`` by naming its provider, where the model's own name
        routes elsewhere (``azure/gpt-4o``; not ``openai/gpt-4o``, where ``gpt-4o`` goes too)."""
        if name == route.model:
            return False
        default = self.resolve(route.model)
        return default is None or default.provider != route.provider

    def live_models(self) -> list[str]:
        """The names ``/v1/models`` lists: catalog models not retired, and virtual models."""
        return sorted([m for m, e in self.models.items() if e.retired is None] + list(self.virtual))

    def blended_price(self, route: Route) -> float | None:
        """USD per million tokens at a 3:1 input:output mix, for ``cheapest``; None if unknown."""
        entry = self.models.get(route.model)
        if entry is None or entry.provider != route.billed_provider:
            return None
        return (3 * (rate_at(entry.input, 0) or 0.0) + (rate_at(entry.output, 0) or 0.0)) / 4


def published_table(entries: dict[str, bytes], key: str) -> RouteTable | None:
    """The route table among a routes bucket's entries (``key``); None when it is not there
    yet, or is not a valid table (logged: the reader keeps the table it holds)."""
    raw = entries.get(key)
    if raw is None:
        return None
    try:
        return RouteTable.model_validate_json(raw)
    except ValidationError as exc:
        log.error("ignoring an invalid route table: %s", exc)
        return None
