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
    assert version == load_catalog().models["gpt-4o"].price_version == "genai-prices 0.2.5 from 2025-11-01"


def test_cache_writes_and_reasoning_use_their_own_prices() -> None:
    # claude-haiku-4-5: input $1, cached read $0.10, cache write $1.25, output $5 per 1M.
    cost, _ = _book().cost(
        _event(
            model="claude-haiku-4-5",
            provider="anthropic",
            prompt_tokens=1_000_000,
            cached_tokens=200_000,
            cache_write_tokens=300_000,
            completion_tokens=100_000,
            reasoning_tokens=40_000,
        )
    )
    assert abs(cost - (0.5 * 1 + 0.2 * 0.1 + 0.3 * 1.25 + 0.1 * 5)) < 1e-9
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


def test_variants_tiers_windows_and_one_hour_writes_apply_where_the_request_qualifies() -> None:
    book = _book()
    standard = dict(model="claude-opus-5-5", provider="anthropic", prompt_tokens=100_000, completion_tokens=10_000)
    cost, _ = book.cost(_event(**standard))  # $4 in, $20 out
    assert abs(cost - (0.1 * 4 + 0.01 * 20)) < 1e-9
    fast, _ = book.cost(_event(**standard, price_context="speed=fast"))  # fast mode: $8 / $40
    assert abs(fast - 2 * cost) < 1e-9
    batch, _ = book.cost(_event(**standard, price_context="processing=batch"))  # from 2026-10-14: half
    assert abs(batch - cost / 2) < 1e-9
    writes = dict(standard, cache_write_tokens=50_000, cache_write_1h_tokens=20_000)
    hourly, _ = book.cost(_event(**writes))  # 30k at the 5-minute $5, 20k at the 1-hour $8
    assert abs(hourly - (0.05 * 4 + 0.03 * 5 + 0.02 * 8 + 0.01 * 20)) < 1e-9
    # Long context: claude-sonnet-4-5 over 200k prompt tokens bills every token at the tier
    short, _ = book.cost(_event(model="claude-sonnet-4-5", provider="anthropic", prompt_tokens=200_000))
    long, _ = book.cost(_event(model="claude-sonnet-4-5", provider="anthropic", prompt_tokens=200_001))
    assert abs(short - 0.2 * 3) < 1e-9 and abs(long - 0.200001 * 6) < 1e-9
    # DeepSeek's off-peak hours (16:30-00:30 UTC) are half price
    peak = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp()
    off_peak = dt.datetime(2026, 11, 20, 20, tzinfo=dt.UTC).timestamp()
    chat = dict(model="deepseek-chat", provider="deepseek", prompt_tokens=1_000_000)
    assert abs(book.cost(_event(ts=peak, **chat))[0] - 0.27) < 1e-9
    assert abs(book.cost(_event(ts=off_peak, **chat))[0] - 0.135) < 1e-9
