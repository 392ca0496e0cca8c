"""Compile the catalog, the operator's overrides and the routing configuration into the route
table edges use. A configuration that does not fit the catalog (an account of an unknown
provider, a target nothing routes to) is refused with :class:`ConfigError` naming the object."""

from __future__ import annotations

import datetime as dt

from shared.catalog import Catalog, Deprecation, ModelEntry, ProviderConfig, RouteTable
from shared.catalog_build import newest
from shared.cost import describe
from shared.gateway_config import ConfigError, GatewayConfig


def compile_routes(
    catalog: Catalog,
    base_urls: dict[str, str],
    self_hosted: dict[str, str] | None = None,
    api_versions: dict[str, str] | None = None,
    config: GatewayConfig | None = None,
    today: dt.date | None = None,
    locations: dict[str, str] | None = None,
) -> RouteTable:
    providers = {}
    for name, cfg in catalog.providers.items():
        update: dict[str, str] = {}
        if base_urls.get(name):
            update["base_url"] = base_urls[name]
        if (api_versions or {}).get(name):
            update["api_version"] = (api_versions or {})[name]
        if (locations or {}).get(name):
            update["location"] = (locations or {})[name]
        providers[name] = cfg.model_copy(update=update) if update else cfg
    for name, url in (self_hosted or {}).items():
        if name in providers:
            raise ValueError(f"self-hosted provider {name!r} has the name of a catalog provider")
        providers[name] = ProviderConfig(api="openai", base_url=url, requires_key=False)
    for alias, target in catalog.aliases.items():
        if target not in catalog.models:
            raise ValueError(f"alias {alias!r} points at unknown model {target!r}")
    for model, entry in catalog.models.items():
        if entry.provider not in providers:
            raise ValueError(f"model {model!r} names unknown provider {entry.provider!r}")
    config = config or GatewayConfig()
    today = today or dt.datetime.now(dt.UTC).date()
    for name, account in config.accounts.items():
        where = f"accounts.{name}"
        if name in providers:
            raise ConfigError(f"{name!r} is already the name of a provider", where=where)
        base = providers.get(account.provider)
        if base is None or base.account_of:
            raise ConfigError(f"unknown provider {account.provider!r}", where=f"{where}.provider")
        account_update: dict[str, object] = {"account_of": account.provider, "prefixes": [], "key_env": ""}
        if account.base_url:
            account_update["base_url"] = account.base_url
        if account.api_version:
            account_update["api_version"] = account.api_version
        providers[name] = base.model_copy(update=account_update)
    models = {m: _as_of(e, today) for m, e in catalog.models.items()}
    deprecated = dict(catalog.deprecated)
    deprecated.update({old: Deprecation(successor=new) for old, new in config.deprecated.items()})
    table = RouteTable(
        catalog_version=catalog.version,
        providers=providers,
        models=models,
        aliases={**_family_aliases(catalog, models, today), **catalog.aliases, **config.aliases},
        virtual=config.models,
        deprecated=deprecated,
        stream_timeouts=catalog.stream_timeouts,
    )
    for name, virtual in config.models.items():
        if name in models:
            raise ConfigError(
                f"{name!r} is a catalog model; give the virtual model another name", where=f"models.{name}"
            )
        for i, target in enumerate(virtual.targets):
            if target in config.models or table.resolve(table.canonical(target)[0]) is None:
                raise ConfigError(
                    f"target {target!r} is not a model the gateway can route to (use provider/model)",
                    where=f"models.{name}.targets.{i}",
                )
    for section, names in (("aliases", config.aliases), ("deprecated", config.deprecated)):
        for name, target in names.items():
            if target not in config.models and table.resolve(table.canonical(target)[0]) is None:
                raise ConfigError(f"{target!r} is not a model the gateway can route to", where=f"{section}.{name}")
    return table


def _as_of(entry: ModelEntry, today: dt.date) -> ModelEntry:
    """A model whose retirement day has not come yet is still live."""
    if entry.retired is not None and entry.retired > today:
        return entry.model_copy(update={"retired": None})
    return entry


def _family_aliases(catalog: Catalog, models: dict[str, ModelEntry], today: dt.date) -> dict[str, str]:
    """Each family's name, for its newest member released and not retired (and the
    families the overlay names on a model, by release day)."""
    out: dict[str, str] = {}
    for family in catalog.families:
        member = newest(catalog, family, models, today)
        if member is not None:
            out[family] = member
    dated: dict[str, tuple[dt.date, str]] = {}
    for model, entry in models.items():
        if entry.family and entry.family not in catalog.families and entry.released is not None:
            if entry.retired is None and (entry.family not in dated or entry.released > dated[entry.family][0]):
                dated[entry.family] = (entry.released, model)
    out.update({family: model for family, (_, model) in dated.items()})
    return out


def catalog_listing(table: RouteTable) -> list[dict[str, object]]:
    """``GET /ai/models``: every catalog model with owner, prices and capabilities."""
    rows: list[dict[str, object]] = []
    for model_id, entry in sorted(table.models.items()):
        if entry.retired is not None:
            continue
        rows.append(
            {
                "id": model_id,
                "object": "model",
                "owned_by": entry.provider,
                "provider": entry.provider,
                "upstream_model": entry.upstream_model or model_id,
                "pricing": describe(entry, entry.price_version or table.catalog_version),
                "context_window": entry.context_window,
                "max_output_tokens": entry.max_output,
                "capabilities": entry.capabilities,
                "aliases": sorted(a for a, t in table.aliases.items() if t == model_id),
            }
        )
    return rows
