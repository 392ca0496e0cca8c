from __future__ import annotations

from services.metering.pricing import UNPRICED, Pricer
from shared.catalog import load_catalog
from shared.events import UsageEvent


def _event(**kw: object) -> UsageEvent:
    return UsageEvent(event_id="e", ts=0.0, **kw)  # type: ignore[arg-type]


def test_cost_prices_cached_input_separately() -> None:
    pricer = Pricer(load_catalog())
    cost, version = pricer.cost(
        _event(
            model="gpt-4o", provider="openai", prompt_tokens=1_000_000, cached_tokens=400_000, completion_tokens=100_000
        )
    )
    # 600k input at $2.50/M + 400k cached at $1.25/M + 100k output at $10/M
    assert abs(cost - (1.5 + 0.5 + 1.0)) < 1e-9
    assert version == load_catalog().version


def test_models_outside_the_catalog_are_marked_unpriced() -> None:
    pricer = Pricer(load_catalog())
    assert pricer.cost(_event(model="gpt-9", provider="openai", prompt_tokens=5)) == (0.0, UNPRICED)
    # The same name under another provider is not that model's price.
    assert pricer.cost(_event(model="gpt-4o", provider="xai", prompt_tokens=5)) == (0.0, UNPRICED)


def test_cached_tokens_never_exceed_prompt_tokens() -> None:
    pricer = Pricer(load_catalog())
    cost, _ = pricer.cost(_event(model="gpt-4o", provider="openai", prompt_tokens=10, cached_tokens=50))
    assert abs(cost - 10 * 1.25 / 1_000_000) < 1e-15
