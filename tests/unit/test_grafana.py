"""deploy/grafana/switchyard.json: every ClickHouse panel's SQL runs on the real schema (the
embedded engine, with Grafana's macros expanded as the ClickHouse plugin does), and every
Prometheus panel names metrics the services really export."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from services.edge.metrics import edge_metrics
from services.metering.sink import Sink
from shared.events import UsageEvent

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "switchyard.json"


def _targets(kind: str) -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
        if target["datasource"]["type"] == kind
    ]


def _expand(sql: str) -> str:
    """Grafana's ClickHouse macros, for the last day, at one-minute steps."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 1 DAY AND \1 <= now()", sql)
    return re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfMinute(\1)", sql)


def test_the_dashboard_declares_its_two_data_sources() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    inputs = {i["name"]: i["pluginId"] for i in dashboard["__inputs"]}
    assert inputs == {"DS_CLICKHOUSE": "grafana-clickhouse-datasource", "DS_PROMETHEUS": "prometheus"}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in ("${DS_CLICKHOUSE}", "${DS_PROMETHEUS}"), panel["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_clickhouse_panel_answers_on_the_real_schema(tmp_path: Path) -> None:
    queries = [_expand(t["rawSql"]) for t in _targets("grafana-clickhouse-datasource")]
    assert len(queries) >= 6

    async def run() -> list[list[tuple[object, ...]]]:
        sink = Sink(f"chdb://{tmp_path / 'ch'}", retention_days=30)
        await sink.open()
        try:
            events = [
                UsageEvent(
                    event_id=f"req_{i}",
                    ts=time.time() - 120,
                    user=f"u{i % 3}",
                    project="p1" if i % 2 else "",
                    model="gpt-4o",
                    provider="openai",
                    stream=bool(i % 2),
                    status=200 if i % 5 else 502,
                    prompt_tokens=100,
                    completion_tokens=10,
                    latency_ms=float(i),
                    ttft_ms=float(i) / 2,
                )
                for i in range(20)
            ]
            await sink.insert([(e, 0.001, "v1") for e in events])
            return [await sink.query(sql, {}) for sql in queries]
        finally:
            await sink.close()

    for sql, rows in zip(queries, asyncio.run(run()), strict=True):
        assert rows, f"no rows from:\n{sql}"


def test_every_prometheus_panel_names_exported_metrics() -> None:
    import services.keyvault.vault
    import services.metering.metrics

    edge_metrics(user_labels=False)
    exported = set()
    for family in REGISTRY.collect():
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
    exported |= {f"{name}_{suffix}" for name in list(exported) for suffix in ("bucket", "sum", "count", "total")}
    assert services.keyvault.vault.VAULT_SECONDS is not None
    expressions = [t["expr"] for t in _targets("prometheus")]
    assert len(expressions) >= 8
    for expr in expressions:
        selectors = re.sub(r"by \([^)]*\)|\{[^}]*\}", "", expr)  # label names are not metrics
        for name in re.findall(r"\b((?:switchyard|gen_ai)_\w+)", selectors):
            assert name in exported, f"{name} in `{expr}` is not a metric Switchyard exports"
