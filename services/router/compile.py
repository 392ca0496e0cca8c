"""Compile the catalog and the operator's overrides into the route table edges use."""

from __future__ import annotations

from shared.catalog import Catalog, RouteTable


def compile_routes(catalog: Catalog, base_urls: dict[str, str]) -> RouteTable:
    providers = {}
    for name, cfg in catalog.providers.items():
        override = base_urls.get(name)
        providers[name] = cfg.model_copy(update={"base_url": override}) if override else cfg
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
