"""The catalog's prices against the pricing dataset's own arithmetic (genai-prices, pinned in
uv.lock): every model, at several times, prompt sizes and kinds of request."""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from genai_prices import Usage
from genai_prices.data import providers

from shared.catalog import load_overlay
from shared.catalog_build import dataset_ids
from shared.cost import cost_usd
from shared.price_dataset import DatasetModel, from_json, matches, pinned

_PUBLISHED = Path(__file__).parent / "fixtures" / "genai_prices_data_2026-08-21.json"


@dataclass
class _Tokens:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int = 0


_TIMES = [
    dt.datetime(2025, 6, 1, 3, tzinfo=dt.UTC),
    dt.datetime(2026, 10, 25, 10, tzinfo=dt.UTC),  # between the batch variants' start days
    dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC),  # peak hours for DeepSeek
    dt.datetime(2026, 12, 1, 20, tzinfo=dt.UTC),  # off-peak
]
_CONTEXTS: list[dict[str, str]] = [
    {},
    {"processing": "batch"},
    {"service_tier": "priority"},
    {"service_tier": "flex"},
    {"speed": "fast"},
]


def _price_at(model: DatasetModel, when: dt.datetime):  # type: ignore[no-untyped-def]
    return [p for p in model.prices if p.since is None or p.since <= when.date()][-1]


def test_every_price_costs_what_the_dataset_computes() -> None:
    dataset = pinned(dataset_ids(load_overlay()))
    by_id = {p.id: p for p in providers}
    rng = random.Random(7)
    checked = 0
    for provider_id, models in dataset.providers.items():
        provider = by_id[provider_id]
        theirs_by_id = {m.id: m for m in provider.models}
        for model_id, model in models.items():
            for when in _TIMES:
                for context in _CONTEXTS:
                    prompt = rng.choice([900, 250_000, 1_200_000])
                    write = rng.randint(0, prompt // 4)
                    tokens = _Tokens(
                        prompt, rng.randint(0, 9000), rng.randint(0, prompt // 4), write, rng.randint(0, write)
                    )
                    kind = ",".join(f"{k}={v}" for k, v in sorted(context.items()))
                    ours = cost_usd(_price_at(model, when), tokens, kind, when.timestamp())
                    usage = Usage(
                        input_tokens=tokens.prompt_tokens,
                        output_tokens=tokens.completion_tokens,
                        cache_read_tokens=tokens.cached_tokens,
                        cache_write_tokens=tokens.cache_write_tokens,
                        cache_write_1h_tokens=tokens.cache_write_1h_tokens,
                    )
                    theirs = theirs_by_id[model_id].calc_price(
                        usage, provider, genai_request_timestamp=when, price_context=context or None
                    )
                    assert ours == pytest.approx(float(theirs.total_price), rel=1e-9, abs=1e-12), (
                        model_id,
                        when,
                        context,
                    )
                    checked += 1
    assert checked > 10_000


def test_a_published_data_json_is_read_with_its_history_and_variants() -> None:
    """The file genai-prices publishes (what POST /ai/catalog and make catalog --dataset take):
    the fixture is its anthropic, x-ai and deepseek entries of 2026-08-21
    (github.com/pydantic/genai-prices, prices/data.json), older than the pinned package."""
    loaded = from_json(json.loads(_PUBLISHED.read_text()), ["anthropic", "x-ai", "deepseek"], "data.json 2026-08-21")
    haiku = loaded.providers["anthropic"]["claude-haiku-4-5"].prices[-1]
    assert (haiku.input, haiku.output, haiku.cache_write_1h, haiku.variants) == (1.0, 5.0, None, ())
    now = pinned(["anthropic"]).providers["anthropic"]["claude-haiku-4-5"].prices[-1]
    assert now.cache_write_1h == 2.0 and [v.when for v in now.variants] == ["processing=batch"]
    assert "claude-opus-5-5" not in loaded.providers["anthropic"]  # released after that file
    deepseek = loaded.providers["deepseek"]["deepseek-chat"].prices[-1]
    assert deepseek.windows and deepseek.windows[0].start == dt.time(0, 30, tzinfo=dt.UTC)  # its peak-hour price
    with pytest.raises(ValueError, match="list of providers"):
        from_json({"not": "a list"}, ["anthropic"], "x")
    with pytest.raises(ValueError, match="not a genai-prices dataset"):
        from_json([{"id": "anthropic"}], ["anthropic"], "x")


@pytest.mark.parametrize(
    ("rule", "name", "expected"),
    [
        ({"or": [{"starts_with": "claude-opus-4-8"}, {"equals": "opus"}]}, "claude-opus-4-8-20261105", True),
        ({"and": [{"starts_with": "gemini-2.5-pro"}, {"regex": "^(?!.*-tts)"}]}, "gemini-2.5-pro-tts", False),
        ({"contains": "sonnet"}, "Claude-SONNET-9", True),  # compared in lower case
        ({"ends_with": "-fast"}, "grok-3-fast", True),
        ({"equals": "gpt-4o"}, "gpt-4o-mini", False),
    ],
)
def test_match_rules_read_like_the_datasets(rule: dict[str, object], name: str, expected: bool) -> None:
    assert matches(rule, name) is expected
