"""The mounted price file: read when its content changes, refused with a reason when broken."""

from __future__ import annotations

import json
from pathlib import Path

from services.metering.price_file import PriceFile


def test_a_price_file_is_read_when_its_content_changes(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    watched = PriceFile(path)
    assert watched.changed() is None and "cannot read" in watched.error  # not mounted yet
    path.write_text(json.dumps({"allow_unpriced": ["openai/gpt-7"], "version": "ops-1"}))
    load = watched.changed()
    assert load is not None and load.allow_unpriced == ["openai/gpt-7"] and watched.error == ""
    assert watched.changed() is None  # the same content: nothing to do
    path.write_text(json.dumps({"prices": "all of them"}))
    assert watched.changed() is None and "prices" in watched.error and "prices in force stay" in watched.error
    path.write_text("{broken")
    assert watched.changed() is None and "not a price file" in watched.error
    path.write_text(json.dumps({"version": "ops-2"}))
    assert watched.changed() is not None and watched.error == ""
    watched.refused("the dataset does not fit the catalog")
    assert "does not fit" in watched.error
