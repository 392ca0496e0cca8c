"""Compile the catalog and the operator's overrides into the route table edges use."""

from __future__ import annotations

from shared.catalog import Catalog, ProviderConfig, RouteTable


def compile_routes(
    catalog: Catalog,
    base_urls: dict[str, str],
    self_hosted: dict[str, str] | None = None,
    api_versions: dict[str, str] | None = None,
) -> RouteTable:
    providers = {}
    for name, cfg in catalog.providers.items():
        update: dict[str, str] = {}
        if base_urls.get(name):
            update["base_url"] = base_urls[name]
        if (api_versions or {}).get(name):
            update["api_version"] = (api_versions or {})[name]
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
    return RouteTable(
        catalog_version=catalog.version,
        providers=providers,
        models=catalog.models,
        aliases=catalog.aliases,
    )


def catalog_listing(table: RouteTable) -> list[dict[str, object]]:
    """``GET /ai/models``: every catalog model with owner, prices and capabilities."""
    rows: list[dict[str, object]] = []
    for model_id, entry in sorted(table.models.items()):
        rows.append(
            {
                "id": model_id,
                "object": "model",
                "owned_by": entry.provider,
                "provider": entry.provider,
                "upstream_model": entry.upstream_model or model_id,
                "pricing": {
                    "currency": "USD",
                    "unit": "1M tokens",
                    "input": entry.input,
                    "output": entry.output,
                    "cached_input": entry.cached_input,
                    "cache_write": entry.cache_write,
                    "version": table.catalog_version,
                },
                "capabilities": entry.capabilities,
                "aliases": sorted(a for a, t in table.aliases.items() if t == model_id),
            }
        )
    return rows
