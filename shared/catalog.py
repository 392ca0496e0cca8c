"""The model catalog (data in ``catalog.toml``) and the route table compiled from it.

The router compiles the catalog and the operator's base-URL overrides into a
:class:`RouteTable`, publishes it to a KV bucket, and every edge resolves model names
against its local copy with :meth:`RouteTable.resolve`.
"""

from __future__ import annotations

import fnmatch
import tomllib
from datetime import date
from pathlib import Path

from pydantic import BaseModel, Field

CATALOG_PATH = Path(__file__).with_name("catalog.toml")


class ProviderConfig(BaseModel):
    api: str = Field(description="wire API: openai, anthropic, gemini, echo")
    base_url: str
    auth_header: str = "authorization"
    auth_scheme: str = "Bearer"
    key_env: str = ""
    requires_key: bool = True
    prefixes: list[str] = []
    api_version: str = ""  # Azure OpenAI's api-version query parameter; Anthropic's anthropic-version


class ModelEntry(BaseModel):
    provider: str
    upstream_model: str | None = None
    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None  # only where reasoning tokens are billed unlike output
    capabilities: tuple[str, ...] = ()  # a tuple, so each Route shares it as it is


class PastPrice(BaseModel):
    """A price a model had before the catalog's current one (USD per million tokens)."""

    model: str
    provider: str
    effective_from: date
    version: str
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None


class Catalog(BaseModel):
    version: str
    prices_effective_from: date = date(2024, 1, 1)
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelEntry]
    aliases: dict[str, str] = {}
    price_history: list[PastPrice] = []


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


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    with path.open("rb") as fh:
        return Catalog.model_validate(tomllib.load(fh))


class Route(BaseModel):
    """Where one request goes."""

    model: str  # the canonical model name (catalog id, or as requested when not in catalog)
    provider: str
    upstream_model: str
    capabilities: tuple[str, ...] = ()  # the catalog's, for a catalog model; none known otherwise


class RouteTable(BaseModel):
    """The compiled, self-contained routing data every edge holds in memory."""

    revision: int = 0
    catalog_version: str
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelEntry]
    aliases: dict[str, str]

    def resolve(self, name: str) -> Route | None:
        """Route ``name``: catalog id or alias, ``provider/model`` pinning, then prefixes."""
        name = self.aliases.get(name, name)
        entry = self.models.get(name)
        if entry is not None:
            upstream = entry.upstream_model or name
            return Route(model=name, provider=entry.provider, upstream_model=upstream, capabilities=entry.capabilities)
        provider, sep, rest = name.partition("/")
        if sep and rest and provider in self.providers:
            pinned = self.models.get(rest)
            if pinned is not None and pinned.provider == provider:
                return Route(
                    model=rest,
                    provider=provider,
                    upstream_model=pinned.upstream_model or rest,
                    capabilities=pinned.capabilities,
                )
            return Route(model=rest, provider=provider, upstream_model=rest)
        for pname, cfg in self.providers.items():
            for pattern in cfg.prefixes:
                if fnmatch.fnmatchcase(name, pattern):
                    return Route(model=name, provider=pname, upstream_model=name)
        return None
