"""The SQL examples in docs/analytics.md run against the real schema on the embedded engine."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from services.metering.pricing import PriceBook, catalog_prices
from services.metering.sink import Sink
from shared.catalog import load_catalog
from shared.events import UsageEvent

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
EXAMPLES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 4


def test_examples_run_and_answer(tmp_path: Path) -> None:
    book = PriceBook(catalog_prices(load_catalog()))

    async def run() -> list[list[tuple[object, ...]]]:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            rows = []
            for i in range(20):
                e = UsageEvent(
                    event_id=f"req_{i}",
                    ts=time.time() - 60,
                    user=f"u{i % 3}",
                    model="gpt-4o",
                    provider="openai",
                    provider_key_id="pk_1",
                    stream=bool(i % 2),
                    status=200 if i % 5 else 502,
                    error_type="" if i % 7 else "client_disconnected",
                    prompt_tokens=100,
                    completion_tokens=10,
                    latency_ms=float(i),
                    ttft_ms=float(i) / 2,
                )
                rows.append((e, *book.cost(e)))
            await sink.insert(rows)
            return [await sink.query(sql, {}) for sql in EXAMPLES]
        finally:
            await sink.close()

    results = asyncio.run(run())
    for sql, result in zip(EXAMPLES, results, strict=True):
        assert result, f"no rows from:\n{sql}"


@pytest.mark.parametrize("column", ["event_id", "cost_usd", "price_version", "cache_write_tokens", "usage_estimated"])
def test_documented_columns_exist(column: str) -> None:
    from services.metering.schema import USAGE_COLUMNS

    assert column in USAGE_COLUMNS
    assert f"`{column}`" in DOC.read_text()
