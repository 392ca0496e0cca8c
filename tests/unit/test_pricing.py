from __future__ import annotations

import datetime as dt

from services.metering.pricing import UNPRICED, Price, PriceBook, catalog_prices
from shared.catalog import load_catalog
from shared.events import UsageEvent

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.UTC).timestamp()


def _event(ts: float = NOW, **kw: object) -> UsageEvent:
    return UsageEvent(event_id="e", ts=ts, **kw)  # type: ignore[arg-type]


def _book(*extra: Price) -> PriceBook:
    return PriceBook(catalog_prices(load_catalog()) + list(extra))


def test_cached_input_is_priced_apart_from_input() -> None:
    cost, version = _book().cost(
        _event(
            model="gpt-4o", provider="openai", prompt_tokens=1_000_000, cached_tokens=400_000, completion_tokens=100_000
        )
    )
    # 600k input at $2.50/M + 400k cached at $1.25/M + 100k output at $10/M
    assert abs(cost - (1.5 + 0.5 + 1.0)) < 1e-9
    assert version == load_catalog().version


def test_cache_writes_and_reasoning_use_their_own_prices() -> None:
    # claude-sonnet-4-5: input $3, cached read $0.30, cache write $3.75, output $15 per 1M.
    cost, _ = _book().cost(
        _event(
            model="claude-sonnet-4-5",
            provider="anthropic",
            prompt_tokens=1_000_000,
            cached_tokens=200_000,
            cache_write_tokens=300_000,
            completion_tokens=100_000,
            reasoning_tokens=40_000,
        )
    )
    assert abs(cost - (0.5 * 3 + 0.2 * 0.3 + 0.3 * 3.75 + 0.1 * 15)) < 1e-9
    reasoning_priced = Price(
        provider="openai", model="o3", effective_from=0, version="r", input=2, output=8, reasoning=20, source="admin"
    )
    cost, version = PriceBook([reasoning_priced]).cost(
        _event(model="o3", provider="openai", completion_tokens=1_000_000, reasoning_tokens=250_000)
    )
    assert abs(cost - (0.75 * 8 + 0.25 * 20)) < 1e-9 and version == "r"


def test_effective_dates_pick_the_price_in_force_at_the_event() -> None:
    book = _book()
    may_2024 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp()
    cost, version = book.cost(_event(ts=may_2024, model="gpt-4o", provider="openai", prompt_tokens=1_000_000))
    assert (round(cost, 9), version) == (5.0, "2024-05-13")
    before_any = dt.datetime(2023, 1, 1, tzinfo=dt.UTC).timestamp()
    assert book.cost(_event(ts=before_any, model="gpt-4o", provider="openai", prompt_tokens=5)) == (0.0, UNPRICED)
    override = Price(
        provider="openai", model="gpt-4o", effective_from=NOW - 10, version="admin-x", input=1, output=2, source="admin"
    )
    book = _book(override)
    assert book.cost(_event(model="gpt-4o", provider="openai", prompt_tokens=1_000_000)) == (1.0, "admin-x")
    # Events before the override keep the catalog price.
    assert book.cost(_event(ts=NOW - 20, model="gpt-4o", provider="openai", prompt_tokens=1_000_000))[1] != "admin-x"


def test_models_outside_the_price_book_are_marked_unpriced() -> None:
    book = _book()
    assert book.cost(_event(model="gpt-9", provider="openai", prompt_tokens=5)) == (0.0, UNPRICED)
    # The same name under another provider is not that model's price.
    assert book.cost(_event(model="gpt-4o", provider="xai", prompt_tokens=5)) == (0.0, UNPRICED)


def test_token_kinds_never_exceed_their_totals() -> None:
    cost, _ = _book().cost(_event(model="gpt-4o", provider="openai", prompt_tokens=10, cached_tokens=50))
    assert abs(cost - 10 * 1.25 / 1_000_000) < 1e-15
