"""The seam to the pricing dataset (genai-prices, pinned in the lock file): its providers,
models, match rules and prices, in the catalog's own terms.

``convert`` turns the dataset's providers (the pinned package's, or a ``data.json`` an admin
loads, the file genai-prices publishes) into :class:`DatasetModel` rows: every model of the
providers asked for that is priced by the token, with its prices by the day they took effect.
A price that depends on the time of day (DeepSeek's off-peak hours) becomes windows of one
price; one for a kind of request (batch, a service tier, fast mode) becomes a variant.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from shared.cost import PriceSpec, Tiered, Variant, Window

# The dataset's price keys, by the catalog's rate names.
_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "reasoning": "output_reasoning_mtok",
}


class DatedPrice(PriceSpec):
    since: dt.date | None = None  # None: from the start of the dataset's record


class DatasetModel(BaseModel):
    id: str
    name: str = ""
    context_window: int | None = None
    deprecated: bool = False
    match: dict[str, Any]  # the dataset's match rule, as in its data.json
    prices: list[DatedPrice]  # oldest first


class Dataset(BaseModel):
    """What the catalog takes from one version of the dataset."""

    source: str  # e.g. "genai-prices 0.2.5"
    providers: dict[str, dict[str, DatasetModel]]  # dataset provider id -> model id -> model


def pinned_source() -> str:
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


def pinned(provider_ids: Iterable[str]) -> Dataset:
    """The dataset the installed package carries."""
    from genai_prices.data import providers

    return convert(providers, provider_ids, pinned_source())


def from_json(raw: Any, provider_ids: Iterable[str], source: str) -> Dataset:
    """A ``data.json`` of the dataset (a list of providers), validated by the package's own
    schema; raises ValueError when it is not one."""
    if not isinstance(raw, list):
        raise ValueError("a genai-prices data.json is a list of providers")
    from genai_prices.types import _providers_from_raw  # the parser the package's updater uses

    try:
        parsed = _providers_from_raw(raw)
    except Exception as exc:  # pydantic's ValidationError, or a price that is not a number
        raise ValueError(f"not a genai-prices dataset: {str(exc).splitlines()[0]}") from exc
    return convert(parsed, provider_ids, source)


def convert(providers: Iterable[Any], provider_ids: Iterable[str], source: str) -> Dataset:
    wanted = set(provider_ids)
    out: dict[str, dict[str, DatasetModel]] = {}
    for provider in providers:
        if provider.id not in wanted:
            continue
        models: dict[str, DatasetModel] = {}
        for model in provider.models:
            prices = _dated_prices(model)
            if prices:
                models[model.id] = DatasetModel(
                    id=model.id,
                    name=model.name or "",
                    context_window=model.context_window,
                    deprecated=bool(model.deprecated),
                    match=_clause(model.match),
                    prices=prices,
                )
        out[provider.id] = models
    return Dataset(source=source, providers=out)


def _rate(value: Any) -> float | Tiered | None:
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    return Tiered(base=float(value.base), tiers=tuple((int(t.start), float(t.price)) for t in value.tiers))


def _rates(model_price: Any) -> dict[str, float | Tiered | None]:
    return {name: _rate(getattr(model_price, key, None)) for name, key in _KEYS.items()}


def _dated_prices(model: Any) -> list[DatedPrice]:
    """The model's prices by start day, or [] when it is not priced by the token."""
    entries = (
        [(None, model.prices)]
        if not isinstance(model.prices, list)
        else [(c.constraint, c.prices) for c in model.prices]
    )
    periods: list[tuple[dt.date | None, dict[str, Any]]] = []
    windows: list[Window] = []
    for constraint, model_price in entries:
        rates = _rates(model_price)
        if constraint is not None and hasattr(constraint, "start_time"):
            windows.append(Window(start=constraint.start_time, end=constraint.end_time, **rates))
        else:
            periods.append((getattr(constraint, "start_date", None), rates))
    if not periods or all(r["input"] is None and r["output"] is None for _, r in periods):
        return []
    variants = tuple(
        Variant(
            when=",".join(f"{k}={v}" for k, v in sorted(variant.when.items())),
            since=getattr(variant.constraint, "start_date", None),
            **_rates(variant.prices),
        )
        for variant in model.price_variants or ()
    )
    periods.sort(key=lambda p: p[0] or dt.date.min)
    return [DatedPrice(since=since, variants=variants, windows=tuple(windows), **rates) for since, rates in periods]


def _clause(clause: Any) -> dict[str, Any]:
    """A match rule as the dataset's data.json writes it."""
    for attr, key in (("or_", "or"), ("and_", "and")):
        if hasattr(clause, attr):
            return {key: [_clause(c) for c in getattr(clause, attr)]}
    for key in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(clause, key):
            return {key: getattr(clause, key)}
    raise ValueError(f"unknown match clause {clause!r}")


def matches(rule: dict[str, Any], name: str) -> bool:
    """Whether a model name fits a dataset match rule (compared in lower case, as the
    dataset does)."""
    name = name.lower()
    if "or" in rule:
        return any(matches(r, name) for r in rule["or"])
    if "and" in rule:
        return all(matches(r, name) for r in rule["and"])
    if "equals" in rule:
        return bool(name == rule["equals"])
    if "starts_with" in rule:
        return name.startswith(str(rule["starts_with"]))
    if "ends_with" in rule:
        return name.endswith(str(rule["ends_with"]))
    if "contains" in rule:
        return str(rule["contains"]) in name
    if "regex" in rule:
        return re.search(str(rule["regex"]), name) is not None
    return False
