"""The edge's prices: a price set at run time over the catalog's, by its effective time; the
kind of request that picks a variant; Anthropic's 1-hour cache writes counted apart."""

from __future__ import annotations

import time

import pytest

from services.edge.prices import EdgePrices, price_context
from services.edge.providers.anthropic import usage_of
from services.router.compile import compile_routes
from shared.catalog import load_catalog
from shared.messages import PriceOut, PricesInForce
from shared.subjects import PRICES_KEY


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return compile_routes(load_catalog(), {})


def _held(*prices: PriceOut, allow: tuple[str, ...] = ()) -> EdgePrices:
    held = EdgePrices(None)  # type: ignore[arg-type]  # the bucket's entries are handed in below
    held._load({PRICES_KEY: PricesInForce(prices=list(prices), allow_unpriced=list(allow)).model_dump_json().encode()})
    return held


def _price(model: str, provider: str, start: float, **rates: float) -> PriceOut:
    return PriceOut(provider=provider, model=model, effective_from=start, version=f"v{start}", source="admin", **rates)


def test_a_price_set_at_run_time_holds_from_its_effective_time(table) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    route = table.resolve("claude-opus-4-8")
    held = _held(
        _price("claude-opus-4-8", "anthropic", now - 10, input=1, output=2),
        _price("claude-opus-4-8", "anthropic", now + 3600, input=3, output=4),
    )
    assert held.price(route, table, now - 20) is table.models["claude-opus-4-8"]  # the catalog's, before
    assert held.price(route, table, now).input == 1  # type: ignore[union-attr]
    assert held.price(route, table, now + 7200).input == 3  # type: ignore[union-attr]
    # Another provider serving the same name is not that price
    pinned = table.resolve("echo/claude-opus-4-8")
    assert held.price(pinned, table, now) is None


def test_an_unpriced_model_is_allowed_by_name_or_provider_and_name(table) -> None:  # type: ignore[no-untyped-def]
    route = table.resolve("gpt-7-experimental")
    assert route is not None and _held().price(route, table) is None
    assert not _held().allows_unpriced(route)
    assert _held(allow=("gpt-7-experimental",)).allows_unpriced(route)
    assert _held(allow=("openai/gpt-7-experimental",)).allows_unpriced(route)
    assert not _held(allow=("xai/gpt-7-experimental",)).allows_unpriced(route)
    assert _held(_price("gpt-7-experimental", "openai", 0, input=1, output=1)).price(route, table) is not None


@pytest.mark.parametrize(
    ("body", "context"),
    [
        ({}, ""),
        ({"service_tier": "auto"}, ""),  # the provider's choice: billed as standard
        ({"service_tier": "flex"}, "service_tier=flex"),
        ({"service_tier": "priority", "speed": "fast"}, "service_tier=priority,speed=fast"),
        ({"speed": "slow"}, ""),
        ({"service_tier": ["priority"]}, ""),
    ],
)
def test_the_kind_of_request_is_read_from_its_body(body: dict[str, object], context: str) -> None:
    assert price_context(body) == context


def test_anthropic_one_hour_cache_writes_are_counted_apart() -> None:
    usage = usage_of(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 6,
            "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 4},
            "output_tokens": 3,
        }
    )
    assert (usage.prompt_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (20, 6, 4)
    lying = usage_of(
        {"input_tokens": 1, "cache_creation_input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 9}}
    )
    assert lying.cache_write_1h_tokens == 1  # never more than the writes


def test_a_dropped_field_does_not_choose_the_price() -> None:
    body = {"service_tier": "flex", "speed": "fast"}
    assert price_context(body, ["service_tier"]) == "speed=fast"
    assert price_context(body, ["service_tier", "speed"]) == ""
