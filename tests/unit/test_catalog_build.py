"""The shipped catalog is the pinned dataset under the overlay, and `make catalog` says what a
newer dataset changes."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from shared.catalog import CATALOG_PATH, PRICES_PATH, load_catalog, load_overlay
from shared.catalog_build import CatalogError, dataset_ids, main, merge
from shared.price_dataset import Dataset, pinned, pinned_source

_PUBLISHED = Path(__file__).parent / "fixtures" / "genai_prices_data_2026-08-21.json"


def test_the_shipped_prices_are_the_pinned_dataset() -> None:
    """catalog_prices.json is what `make catalog` makes from the genai-prices in uv.lock: a
    dataset upgrade without `make catalog` (or a hand edit of the file) fails here."""
    shipped = Dataset.model_validate_json(PRICES_PATH.read_bytes())
    assert shipped.source == pinned_source() == "genai-prices 0.2.5"
    assert shipped == pinned(dataset_ids(load_overlay()))


def test_every_price_comes_from_the_dataset_or_says_why_not() -> None:
    catalog = load_catalog()
    for name, entry in catalog.models.items():
        assert entry.price_source, name
        if not entry.price_source.startswith("genai-prices"):  # the overlay's own: a model the dataset lacks
            assert entry.price_source.startswith(("not in the dataset", "the built-in")), (name, entry.price_source)
    # The lineup: every provider's current models, from the dataset
    lineup = {p: sorted(m for m, e in catalog.models.items() if e.provider == p) for p in ("anthropic", "xai")}
    assert {"claude-opus-4-8", "claude-opus-5", "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"} <= set(
        lineup["anthropic"]
    )
    assert {"grok-4.5", "grok-4.6", "grok-4.7"} <= set(lineup["xai"])


def _overlay_with(model: str, **fields: object) -> dict[str, object]:
    overlay = copy.deepcopy(load_overlay())
    overlay["models"][model] = {**overlay["models"].get(model, {}), **fields}  # type: ignore[index]
    return overlay


def test_a_price_the_dataset_has_is_overridden_only_with_a_date_and_a_reason() -> None:
    data = Dataset.model_validate_json(PRICES_PATH.read_bytes())
    with pytest.raises(CatalogError, match="override"):
        merge(_overlay_with("claude-opus-4-8", input=1.0), data)
    with pytest.raises(CatalogError, match="override"):
        merge(_overlay_with("claude-opus-4-8", input=1.0, override={"since": dt.date(2026, 12, 1)}), data)
    catalog = merge(
        _overlay_with(
            "claude-opus-4-8", input=1.0, override={"since": dt.date(2026, 12, 1), "reason": "our negotiated rate"}
        ),
        data,
    )
    entry = catalog.models["claude-opus-4-8"]
    assert entry.input == 1.0 and entry.output == 25.0  # the rest stays the dataset's
    assert entry.price_since == dt.date(2026, 12, 1) and "our negotiated rate" in entry.price_source
    with pytest.raises(CatalogError, match="price_source"):  # a model the dataset lacks says where its price is from
        merge(_overlay_with("made-up-model", provider="cohere", input=1.0, output=2.0), data)


def test_make_catalog_writes_the_file_and_prints_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "catalog_prices.json"
    shutil.copy(PRICES_PATH, out)
    # An older published data.json (anthropic, x-ai, deepseek of 2026-08-21): the models released
    # since are removed, the prices it lacked (1-hour cache writes, batch) change.
    overlay = tmp_path / "catalog.toml"
    text = CATALOG_PATH.read_text()
    overlay.write_text(text)
    assert main(["--dataset", str(_PUBLISHED), "--out", str(out), "--overlay", str(overlay)]) == 0
    report = capsys.readouterr().out
    assert "removed  claude-opus-5-5" in report
    assert "price    claude-haiku-4-5: cache_write_1h, variants" in report
    written = json.loads(out.read_text())
    assert "openai" not in written["providers"] and "claude-opus-5-5" not in written["providers"]["anthropic"]
    # Back to the pinned dataset: those models come back
    assert main(["--out", str(out), "--overlay", str(overlay)]) == 0
    report = capsys.readouterr().out
    assert "added    claude-opus-5-5 (anthropic)" in report and "added    gpt-6.2-sol (openai)" in report
    assert "deprecated gemini-2.0-flash" in report  # the dataset flags it; the overlay gives no retirement yet
    assert Dataset.model_validate_json(out.read_bytes()) == Dataset.model_validate_json(PRICES_PATH.read_bytes())


def test_the_docs_show_the_lineup(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lineup"]) == 0
    table = capsys.readouterr().out
    assert table in (Path(__file__).parents[2] / "docs" / "catalog.md").read_text(), "run --lineup into docs/catalog.md"
