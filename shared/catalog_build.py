"""The catalog from the pricing dataset and Switchyard's overlay, and ``make catalog``.

``merge`` makes the catalog: for each provider the overlay maps to a dataset provider, every
dataset model whose id the provider's prefixes route (its current lineup, with prices and
context windows), then the overlay's models, which add what the dataset lacks (dates,
successors, capabilities, output limits) or are models the dataset lacks (with their own
price and where it came from). A price the overlay sets for a model the dataset prices is
an override: it must say since when and why, or the catalog does not load.

``python -m shared.catalog_build`` (``make catalog``) writes ``shared/catalog_prices.json``
from the installed dataset (or ``--dataset data.json``, the file genai-prices publishes) and
prints what changed: models added and removed, prices changed, models retired.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import re
import sys
from pathlib import Path
from typing import Any

from shared.catalog import (
    CATALOG_PATH,
    PRICES_PATH,
    Catalog,
    Family,
    ModelEntry,
    PastPrice,
    ProviderConfig,
    RouteTable,
)
from shared.cost import PRICE_FIELDS, RATE_FIELDS, spec_fields
from shared.price_dataset import Dataset, DatasetModel, from_json, matches, pinned

_PRICE_KEYS = frozenset(PRICE_FIELDS)


class CatalogError(ValueError):
    pass


def dataset_ids(overlay: dict[str, Any]) -> list[str]:
    return sorted({p["dataset"] for p in overlay.get("providers", {}).values() if p.get("dataset")})


def _routes(cfg: ProviderConfig, model_id: str) -> bool:
    return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in cfg.prefixes)


def find(models: dict[str, DatasetModel], name: str) -> DatasetModel | None:
    """The dataset model a name is (its id, else the first whose match rule fits)."""
    if name in models:
        return models[name]
    ref = name.split("/")[-1]
    return next((m for m in models.values() if matches(m.match, ref)), None)


def _capabilities(rules: list[dict[str, Any]], provider: str, model_id: str) -> tuple[str, ...]:
    for rule in rules:
        if rule["provider"] == provider and any(fnmatch.fnmatchcase(model_id, g) for g in rule["match"]):
            return tuple(rule["capabilities"])
    return ()


def _from_dataset(
    provider: str, model: DatasetModel, source: str, since_default: dt.date
) -> tuple[dict[str, Any], list[PastPrice], str]:
    *past, current = model.prices
    fields: dict[str, Any] = {
        **spec_fields(current),
        "provider": provider,
        "name": model.name,
        "deprecated": model.deprecated,
        "context_window": model.context_window,
        "match": model.match,
        "price_source": source,
        "price_since": current.since or since_default,
    }
    history = [
        PastPrice(
            model=model.id,
            provider=provider,
            effective_from=p.since or since_default,
            version=f"{source} from {p.since or since_default}",
            **spec_fields(p),
        )
        for p in past
    ]
    return fields, history, f"{source} from {fields['price_since']}"


def merge(overlay: dict[str, Any], dataset: Dataset) -> Catalog:
    providers = {name: ProviderConfig.model_validate(cfg) for name, cfg in overlay.get("providers", {}).items()}
    since_default = overlay.get("prices_effective_from", dt.date(2024, 1, 1))
    version = f"{overlay['version']}/{dataset.source}"
    rules = overlay.get("capabilities", [])
    raw: dict[str, dict[str, Any]] = {}
    history: list[PastPrice] = []
    for pname, cfg in providers.items():
        for model in dataset.providers.get(cfg.dataset, {}).values() if cfg.dataset else ():
            if _routes(cfg, model.id) and not model.id.endswith("-"):  # "ft:gpt-4o-..-": a prefix, not a name
                fields, past, price_version = _from_dataset(pname, model, dataset.source, since_default)
                fields["capabilities"] = _capabilities(rules, pname, model.id)
                fields["price_version"] = price_version
                raw[model.id] = fields
                history += past
    for name, spec in overlay.get("models", {}).items():
        spec = dict(spec)
        override = spec.pop("override", None)
        priced_here = _PRICE_KEYS & spec.keys()
        known = raw.get(name)
        if known is None:
            pname = str(spec.get("provider", ""))
            if pname not in providers:
                raise CatalogError(f"catalog model {name!r}: the dataset does not have it; name its provider")
            cfg = providers[pname]
            found = (
                find(dataset.providers.get(cfg.dataset, {}), spec.get("upstream_model") or name)
                if cfg.dataset
                else None
            )
            if found is not None and not priced_here:
                known, past, price_version = _from_dataset(pname, found, dataset.source, since_default)
                known["capabilities"] = _capabilities(rules, pname, found.id)
                known["price_version"] = price_version
                history += [p.model_copy(update={"model": name}) for p in past]
            elif priced_here and not spec.get("price_source") and override is None:
                raise CatalogError(f"catalog model {name!r} is priced by the overlay: say where from (price_source)")
            else:
                known = {"price_version": f"{overlay['version']}/overlay", "price_since": since_default}
        elif priced_here:
            if override is None or not override.get("since") or not override.get("reason"):
                raise CatalogError(
                    f"the overlay sets {sorted(priced_here)} for {name!r}, which the dataset prices: "
                    'an override needs override = {since = <date>, reason = "..."}'
                )
            spec["price_source"] = f"overlay override from {override['since']}: {override['reason']}"
            spec["price_since"] = override["since"]
            spec["price_version"] = f"{overlay['version']}/override"
        raw[name] = {**known, **spec}
    families = {name: Family.model_validate(f) for name, f in overlay.get("families", {}).items()}
    for family_name, family in families.items():
        for model_id, fields in raw.items():
            if fields.get("provider") == family.provider and _member(family, model_id):
                fields.setdefault("family", family_name)
    models = {name: ModelEntry.model_validate(fields) for name, fields in raw.items()}
    history += [PastPrice.model_validate(p) for p in overlay.get("price_history", [])]
    return Catalog(
        version=version,
        dataset=dataset.source,
        prices_effective_from=since_default,
        providers=providers,
        models=models,
        aliases=overlay.get("aliases", {}),
        families=families,
        deprecated=overlay.get("deprecated", {}),
        price_history=history,
        stream_timeouts=overlay.get("stream_timeouts", {}),
    )


def _member(family: Family, model_id: str) -> bool:
    return any(fnmatch.fnmatchcase(model_id, g) for g in family.match) and model_id not in family.exclude


def version_key(model_id: str) -> tuple[int, ...]:
    """``claude-opus-4-8`` -> (4, 8); ``gpt-6.2-sol`` -> (6, 2): newer is larger."""
    return tuple(int(n) for n in re.findall(r"\d+", model_id))


def newest(catalog: Catalog, family_name: str, models: dict[str, ModelEntry], today: dt.date) -> str | None:
    """A family's member in force ``today``: the provider's pinned one, else the highest
    version released and not retired, previews left out."""
    family = catalog.families[family_name]

    def live(model_id: str) -> bool:
        entry = models[model_id]
        return (
            entry.family == family_name
            and (entry.retired is None or entry.retired > today)
            and (entry.released is None or entry.released <= today)
        )

    if family.pin:
        pinned_to = [m for m, e in models.items() if e.match is not None and matches(e.match, family.pin)]
        if pinned_to and live(pinned_to[0]):
            return pinned_to[0]
    members = [m for m in models if live(m) and "preview" not in m]
    return max(members, key=version_key, default=None)


# --- make catalog ---------------------------------------------------------------------------


def release_day(catalog: Catalog) -> dt.date:
    """The day the overlay was released (its version): the docs show the lineup of that day."""
    return dt.date.fromisoformat(catalog.version.split("/")[0])


def load_catalog_from(overlay: Path, prices: Path) -> Catalog:
    return merge(_load_overlay(overlay), Dataset.model_validate_json(prices.read_bytes()))


def _load_overlay(path: Path) -> dict[str, Any]:
    import tomllib

    with path.open("rb") as fh:
        return tomllib.load(fh)


def changes(before: Catalog | None, after: Catalog, today: dt.date) -> list[str]:
    """What a new dataset changes: models added and removed, prices changed, retirements."""
    lines: list[str] = []
    old = before.models if before is not None else {}
    for name in sorted(after.models.keys() - old.keys()):
        lines.append(f"added    {name} ({after.models[name].provider})")
    for name in sorted(old.keys() - after.models.keys()):
        lines.append(f"removed  {name}")
    for name in sorted(after.models.keys() & old.keys()):
        a, b = old[name], after.models[name]
        fields = [f for f in (*RATE_FIELDS, "variants", "windows") if getattr(a, f) != getattr(b, f)]
        if fields:
            was = {f: getattr(a, f) for f in fields if f in RATE_FIELDS}
            now = {f: getattr(b, f) for f in fields if f in RATE_FIELDS}
            lines.append(f"price    {name}: {', '.join(fields)} {was} -> {now}")
    for name, entry in sorted(after.models.items()):
        if entry.retired is not None and entry.retired <= today and (name not in old or old[name].retired is None):
            lines.append(f"retired  {name} on {entry.retired} -> {entry.successor}")
        elif entry.deprecated and entry.retired is None and (name not in old or not old[name].deprecated):
            lines.append(f"deprecated {name}: the dataset says so; give it `retired` and `successor` in the overlay")
    return lines


def lineup_markdown(table: RouteTable) -> str:
    """The catalog's lineup as docs/catalog.md shows it (``--lineup``; a test keeps the two
    the same): each provider's live models today, and what each family name stands for."""
    families = {e.family for e in table.models.values() if e.family}
    lines = ["| provider | family aliases | live models |", "|---|---|---|"]
    for provider in sorted({e.provider for e in table.models.values()}):
        live = sorted(m for m, e in table.models.items() if e.provider == provider and e.retired is None)
        named = ", ".join(
            f"`{f}` → `{table.aliases[f]}`"
            for f in sorted(families & table.aliases.keys())
            if table.models[table.aliases[f]].provider == provider
        )
        lines.append(f"| {provider} | {named or '-'} | {', '.join(f'`{m}`' for m in live)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make catalog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, help="a genai-prices data.json (default: the installed package's)")
    parser.add_argument("--out", type=Path, default=PRICES_PATH)
    parser.add_argument("--overlay", type=Path, default=CATALOG_PATH)
    parser.add_argument(
        "--lineup", action="store_true", help="print the lineup table of docs/catalog.md, write nothing"
    )
    args = parser.parse_args(argv)
    if args.lineup:
        from services.router.compile import compile_routes

        catalog = load_catalog_from(args.overlay, args.out)
        print(lineup_markdown(compile_routes(catalog, {}, today=release_day(catalog))), end="")
        return 0
    overlay = _load_overlay(args.overlay)
    ids = dataset_ids(overlay)
    if args.dataset is not None:
        data = from_json(json.loads(args.dataset.read_text()), ids, f"genai-prices data.json {args.dataset.name}")
    else:
        data = pinned(ids)
    before = None
    if args.out.exists():
        try:
            before = merge(overlay, Dataset.model_validate_json(args.out.read_bytes()))
        except Exception as exc:  # the old file no longer fits the overlay: everything is new
            print(f"(the previous {args.out.name} does not load with this overlay: {exc})", file=sys.stderr)
    after = merge(overlay, data)  # refuses an overlay that does not fit the new dataset
    args.out.write_text(data.model_dump_json(indent=1, exclude_defaults=True) + "\n")
    today = dt.datetime.now(dt.UTC).date()
    report = changes(before, after, today)
    print(f"{args.out}: {data.source}, {len(after.models)} catalog models")
    print("\n".join(report) if report else "no changes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
