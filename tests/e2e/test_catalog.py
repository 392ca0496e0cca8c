"""The catalog in production, on a stack of its own with two edges: models newer than the old
hand-kept catalog are priced and budgeted, a model nobody priced is refused under a budget
until an admin prices it or allows it, a newer dataset loaded at run time is in force on both
edges and in metering when the call returns and survives SIGKILLs of metering and NATS, and
stored usage is re-costed after a correction with the history kept."""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, Simulators, own_gateway, wait_until
from tests.simulators.anthropic_sim import CACHE_READ, CACHE_WRITE, CACHE_WRITE_1H

EDGE_B = "edge-catalog-b"
MESSAGES = [{"role": "user", "content": "what does this cost?"}]
PUBLISHED = Path(__file__).parents[1] / "unit" / "fixtures" / "genai_prices_data_2026-08-21.json"


@pytest.fixture(scope="module")
def two_edges(tmp_path_factory: pytest.TempPathFactory, sims: Simulators) -> Iterator[tuple[Gateway, list[str]]]:
    for gateway in own_gateway(tmp_path_factory.mktemp("catalog"), sims):
        other = gateway.stack.add_edge(EDGE_B)
        wait_until(lambda gw=gateway: _heard(gw), what="the router to hear both edges")
        yield gateway, [gateway.origin, other]


def _heard(gateway: Gateway) -> bool:
    resp = gateway.admin("PUT", "/ai/users/catalog-probe", json={"rpm": 1000})
    return resp.headers.get("x-switchyard-sync") == "confirmed 2/2"


def _key(gateway: Gateway, user: str, **limits: Any) -> str:
    resp = gateway.admin("POST", "/ai/keys", json={"user": user, "name": "catalog", **limits})
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-switchyard-sync"] == "confirmed 2/2"
    return str(resp.json()["key"])


def _chat(origin: str, key: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        origin + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": MESSAGES, "max_tokens": 64, "user": "catalog", **extra},
        timeout=60,
    )


def _metered(gateway: Gateway, user: str, n: int) -> dict[str, Any]:
    wait_until(lambda: gateway.requests_metered(user) >= n, what=f"{n} request(s) of {user} metered")
    return gateway.usage(user)


def _opus_cost(usage: dict[str, Any], rates: dict[str, float]) -> float:
    """What claude-opus-4-8 costs for an answer's usage, at ``rates`` (USD per 1M tokens):
    the simulator reads CACHE_READ tokens and writes CACHE_WRITE, CACHE_WRITE_1H of them for an hour."""
    fresh = usage["prompt_tokens"] - CACHE_READ - CACHE_WRITE
    micro = (
        fresh * rates["input"]
        + CACHE_READ * rates["cached_input"]
        + (CACHE_WRITE - CACHE_WRITE_1H) * rates["cache_write"]
        + CACHE_WRITE_1H * rates["cache_write_1h"]
        + usage["completion_tokens"] * rates["output"]
    )
    return micro / 1_000_000


OPUS_4_8 = {"input": 5.0, "output": 25.0, "cached_input": 0.5, "cache_write": 6.25, "cache_write_1h": 10.0}


def test_models_show_their_context_window_and_prices(two_edges: tuple[Gateway, list[str]]) -> None:
    gateway, edges = two_edges
    for origin in edges:
        headers = {"authorization": f"Bearer {gateway.info.admin_key}"}
        listing = httpx.get(origin + "/v1/models", headers=headers, timeout=30).json()["data"]
        models = {m["id"]: m for m in listing}
        opus = models["claude-opus-4-8"]
        assert opus["context_window"] == 1_000_000 and opus["max_output_tokens"] == 128_000
        assert {k: opus["pricing"][k] for k in OPUS_4_8} == OPUS_4_8
        assert opus["pricing"]["variants"] == ["processing=batch", "speed=fast"]
        sonnet = httpx.get(origin + "/v1/models/claude-sonnet-4-5", headers=headers, timeout=30)
        assert sonnet.json()["id"] == "claude-sonnet-4-6"  # retired on 2026-11-30: its successor
        tiers = models["claude-sonnet-4-6"]["pricing"]
        assert tiers["input"] == 3.0 and tiers["version"].startswith("genai-prices 0.2.5")
    explained = gateway.admin("GET", "/ai/routes/explain", params={"model": "claude-opus"}).json()
    assert explained["resolved"] == "claude-opus-5-5"
    assert explained["targets"][0]["price"]["input"] == 4.0


def test_a_budget_holds_on_a_model_the_old_catalog_did_not_price(two_edges: tuple[Gateway, list[str]]) -> None:
    """claude-opus-4-8 was unpriced before the catalog came from the dataset: its budget
    reserved and settled $0, so a $0.002 budget never refused. Now it spends and refuses."""
    gateway, edges = two_edges
    user = "catalog-opus-budget"
    key = _key(gateway, user, budget_usd=0.002, budget_period="day")
    answered: list[dict[str, Any]] = []
    refused = None
    for i in range(200):
        resp = _chat(edges[i % 2], key, "claude-opus-4-8")
        if resp.status_code == 429:
            refused = resp
            break
        assert resp.status_code == 200, resp.text
        answered.append(resp.json()["usage"])
    assert refused is not None, "the budget never refused"
    assert refused.json()["error"]["code"] == "budget_exceeded"
    summary = _metered(gateway, user, len(answered))
    expected = sum(_opus_cost(u, OPUS_4_8) for u in answered)
    assert summary["total_cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert summary["unpriced_requests"] == 0
    assert [v["version"] for v in summary["by_price_version"]] == ["genai-prices 0.2.5 from 2025-11-01"]
    assert expected <= 0.002 + _opus_cost(answered[-1], OPUS_4_8) * len(edges)  # the settlement bound


def test_an_unpriced_model_is_refused_under_a_budget_until_priced_or_allowed(
    two_edges: tuple[Gateway, list[str]],
) -> None:
    gateway, edges = two_edges
    budgeted = _key(gateway, "catalog-unpriced", budget_usd=5, budget_period="month")
    free = _key(gateway, "catalog-unpriced-free")  # no budget: served, and counted as unpriced
    for origin in edges:
        resp = _chat(origin, budgeted, "gpt-7-experimental")
        assert resp.status_code == 403, resp.text
        error = resp.json()["error"]
        assert (error["type"], error["param"]) == ("permission_error", "model")
        assert "has no price" in error["message"] and "POST /ai/prices" in error["message"]
        assert _chat(origin, free, "gpt-7-experimental").status_code == 200
    summary = _metered(gateway, "catalog-unpriced-free", 2)
    assert summary["unpriced_requests"] == 2 and summary["total_cost_usd"] == 0

    # An admin prices it: in force on both edges and in metering when the call returns.
    resp = gateway.admin(
        "POST", "/ai/prices", json={"model": "gpt-7-experimental", "provider": "openai", "input": 2, "output": 8}
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-switchyard-sync"] == "confirmed 2/2"
    answers = [_chat(origin, budgeted, "gpt-7-experimental") for origin in edges]
    assert [r.status_code for r in answers] == [200, 200]
    summary = _metered(gateway, "catalog-unpriced", 4)  # the two refusals are metered too (no tokens)
    usage = [r.json()["usage"] for r in answers]
    expected = sum((u["prompt_tokens"] * 2 + u["completion_tokens"] * 8) / 1_000_000 for u in usage)
    assert summary["total_cost_usd"] == pytest.approx(expected, rel=1e-9) and summary["unpriced_requests"] == 0
    assert summary["by_price_version"][0]["version"].startswith("admin-")

    # Or allows one unpriced: admitted under the budget, metered as unpriced.
    assert _chat(edges[1], budgeted, "gpt-8-experimental").status_code == 403
    resp = gateway.admin("POST", "/ai/catalog", json={"allow_unpriced": ["openai/gpt-8-experimental"]})
    assert resp.status_code == 200 and resp.headers["x-switchyard-sync"] == "confirmed 2/2", resp.text
    assert resp.json()["allow_unpriced"] == ["openai/gpt-8-experimental"]
    assert [_chat(origin, budgeted, "gpt-8-experimental").status_code for origin in edges] == [200, 200]
    assert _metered(gateway, "catalog-unpriced", 7)["unpriced_requests"] == 2


def _newer_dataset() -> list[dict[str, Any]]:
    """A genai-prices data.json (the published file of 2026-08-21, anthropic and x-ai) with
    claude-opus-4-8's input price raised to $7.50: a correction the dataset ships."""
    raw = json.loads(PUBLISHED.read_text())
    newer = copy.deepcopy(raw)
    for provider in newer:
        for model in provider["models"]:
            if model["id"] == "claude-opus-4-8":
                prices = model["prices"]
                target = prices if isinstance(prices, dict) else prices[-1]["prices"]
                target["input_mtok"] = 7.5
    return newer


def _opus_on(gateway: Gateway, origin: str) -> dict[str, Any]:
    resp = httpx.get(
        origin + "/v1/models/claude-opus-4-8", headers={"authorization": f"Bearer {gateway.info.admin_key}"}, timeout=30
    )
    return dict(resp.json()["pricing"])


def test_a_dataset_loaded_at_run_time_is_in_force_everywhere_survives_kills_and_recosts(
    two_edges: tuple[Gateway, list[str]],
) -> None:
    gateway, edges = two_edges
    user = "catalog-reload"
    key = _key(gateway, user)
    before = _chat(edges[0], key, "claude-opus-4-8")
    assert before.status_code == 200
    first = _metered(gateway, user, 1)
    assert first["total_cost_usd"] == pytest.approx(_opus_cost(before.json()["usage"], OPUS_4_8), rel=1e-9)

    loaded = gateway.admin(
        "POST", "/ai/catalog", json={"dataset": _newer_dataset(), "version": "genai-prices 2026-08-21+fix"}
    )
    assert loaded.status_code == 200, loaded.text
    assert loaded.headers["x-switchyard-sync"] == "confirmed 2/2"
    body = loaded.json()
    assert "anthropic/claude-opus-4-8" in body["changed"] and body["version"] == "genai-prices 2026-08-21+fix"
    # That file lacks the 1-hour cache writes and batch prices of the pinned one: those change too.
    assert "anthropic/claude-haiku-4-5" in body["changed"]
    for origin in edges:  # in force on both edges at once
        assert _opus_on(gateway, origin)["input"] == 7.5
    prices = {(p["provider"], p["model"]): p for p in gateway.admin("GET", "/ai/prices").json()["data"]}
    assert prices[("anthropic", "claude-opus-4-8")]["input"] == 7.5  # and in metering
    assert prices[("anthropic", "claude-opus-4-8")]["source"] == "dataset"
    explained = gateway.admin("GET", "/ai/routes/explain", params={"model": "claude-opus-4-8"}).json()
    assert explained["targets"][0]["price"]["version"] == "genai-prices 2026-08-21+fix"

    newer = dict(OPUS_4_8, input=7.5, cache_write_1h=6.25)  # that file has no 1-hour write price
    after = _chat(edges[1], key, "claude-opus-4-8")
    summary = _metered(gateway, user, 2)
    expected = _opus_cost(before.json()["usage"], OPUS_4_8) + _opus_cost(after.json()["usage"], newer)
    assert summary["total_cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert {v["version"] for v in summary["by_price_version"]} == {
        "genai-prices 0.2.5 from 2025-11-01",
        "genai-prices 2026-08-21+fix",
    }

    # SIGKILL metering, then NATS: the loaded prices are stored, and the edges get them back.
    gateway.stack.supervisor.stop("metering", signal.SIGKILL)
    gateway.stack.supervisor.start("metering")
    nats_pid = gateway.stack.supervisor.pid("nats")
    assert nats_pid is not None
    os.kill(nats_pid, signal.SIGKILL)
    wait_until(lambda: gateway.stack.supervisor.pid("nats") not in (None, nats_pid), what="NATS to restart")
    wait_until(lambda: gateway.admin("GET", "/ai/prices").status_code == 200, timeout=60, what="metering back")
    prices = {(p["provider"], p["model"]): p for p in gateway.admin("GET", "/ai/prices").json()["data"]}
    assert prices[("anthropic", "claude-opus-4-8")]["input"] == 7.5
    for origin in edges:
        assert _opus_on(gateway, origin)["input"] == 7.5
    third = _chat(edges[0], key, "claude-opus-4-8")
    assert third.status_code == 200
    summary = _metered(gateway, user, 3)
    expected += _opus_cost(third.json()["usage"], newer)
    assert summary["total_cost_usd"] == pytest.approx(expected, rel=1e-9)  # nothing lost, nothing twice

    # The loaded price was wrong: $6 was right from the moment it took effect. The correction
    # takes effect at that moment (an admin's price wins over a dataset's of the same moment),
    # and the two requests since are re-costed; the first, at the catalog's price, is not.
    fix = {
        "model": "claude-opus-4-8",
        "provider": "anthropic",
        "input": 6,
        "output": 25,
        "cached_input": 0.5,
        "cache_write": 6.25,
        "cache_write_1h": 10,
        "effective_from": body["effective_from"],
    }
    fixed_price = gateway.admin("POST", "/ai/prices", json=fix)
    assert fixed_price.status_code == 201, fixed_price.text
    window = {"from": time.time() - 3600, "to": time.time() + 60, "model": "claude-opus-4-8", "user": user}
    dry = gateway.admin("POST", "/ai/usage/recost", json={**window, "dry_run": True}).json()
    assert (dry["events_checked"], dry["events_corrected"]) == (3, 2)
    assert gateway.usage(user)["corrections_usd"] == 0  # a dry run writes nothing
    report = gateway.admin("POST", "/ai/usage/recost", json=window).json()
    fixed = dict(OPUS_4_8, input=6.0)
    recosted = _opus_cost(before.json()["usage"], OPUS_4_8) + sum(
        _opus_cost(r.json()["usage"], fixed) for r in (after, third)
    )
    assert report["delta_usd"] == pytest.approx(recosted - expected, rel=1e-9)
    summary = gateway.usage(user)
    assert summary["total_cost_usd"] == pytest.approx(recosted, rel=1e-9)
    assert summary["corrections_usd"] == pytest.approx(recosted - expected, rel=1e-9)
    versions = {v["version"]: v["requests"] for v in summary["by_price_version"]}
    assert versions == {"genai-prices 0.2.5 from 2025-11-01": 1, fixed_price.json()["version"]: 2}
    again = gateway.admin("POST", "/ai/usage/recost", json={**window, "correction_id": report["correction_id"]})
    assert again.json()["events_corrected"] == 2  # the same correction again replaces its rows
    assert gateway.usage(user)["total_cost_usd"] == pytest.approx(recosted, rel=1e-9)
    assert gateway.admin("POST", "/ai/usage/recost", json=window).json()["events_corrected"] == 0  # nothing left
    raw = gateway.admin("GET", "/ai/usage/requests", params={"user": user, "period": "24h"}).json()["data"]
    kept = [_opus_cost(before.json()["usage"], OPUS_4_8)] + [
        _opus_cost(r.json()["usage"], newer) for r in (after, third)
    ]
    assert sorted(round(r["cost_usd"], 12) for r in raw) == sorted(round(c, 12) for c in kept)  # history kept


def test_bad_catalog_loads_are_refused_in_the_callers_shape(two_edges: tuple[Gateway, list[str]]) -> None:
    gateway, _ = two_edges
    for body, what in (
        ({"dataset": [{"id": "anthropic"}]}, "not a genai-prices dataset"),
        ({"dataset": {"source": "x"}}, "not a pricing dataset"),
        ({"prices": [{"model": "nonesuch-model", "input": 1, "output": 1}]}, "name its provider"),
        ({"allow_unpriced": "everything"}, "allow_unpriced"),
    ):
        resp = gateway.admin("POST", "/ai/catalog", json=body)
        assert resp.status_code == 400, (body, resp.text)
        assert what in resp.json()["error"]["message"], resp.text
    assert gateway.admin("POST", "/ai/usage/recost", json={"from": 10, "to": 5}).status_code == 400


def _filed_cost(gateway: Gateway, origin: str, key: str, user: str, n: int) -> tuple[float, dict[str, Any]]:
    """One budgeted request for the filed model; the summary once it (the n-th) is metered."""
    resp = _chat(origin, key, "gpt-7-filed")
    assert resp.status_code == 200, resp.text
    return float(_metered(gateway, user, n)["total_cost_usd"]), resp.json()["usage"]


def _filed(input_price: float, output_price: float) -> str:
    return json.dumps(
        {"prices": [{"model": "gpt-7-filed", "provider": "openai", "input": input_price, "output": output_price}]}
    )


@pytest.fixture
def filed_stack(tmp_path: Path, sims: Simulators) -> Iterator[tuple[Gateway, Path, list[str]]]:
    filed = tmp_path / "prices.json"
    filed.write_text(_filed(1, 2))
    env = {"GATEWAY_PRICES_FILE": str(filed), "GATEWAY_PRICES_FILE_POLL_SECONDS": "0.2"}
    for gateway in own_gateway(tmp_path / "stack", sims, **env):
        other = gateway.stack.add_edge("edge-filed-b")
        wait_until(lambda gw=gateway: _heard(gw), what="the router to hear both edges")
        yield gateway, filed, [gateway.origin, other]


def test_a_mounted_price_file_is_read_at_start_and_when_it_changes(
    filed_stack: tuple[Gateway, Path, list[str]],
) -> None:
    """GATEWAY_PRICES_FILE, as a ConfigMap mounts it: its prices hold from the start, a new
    content is in force on the edges soon after, a broken one changes nothing and says why,
    and a metering SIGKILLed and started again reads the same file without a new price row."""
    gateway, filed, edges = filed_stack
    metering = gateway.stack.info.health["metering"]
    user = "catalog-filed"
    key = _key_one_edge(gateway, user)
    # The file is read when metering starts; an edge holds its prices once it has read the
    # prices bucket (until then a budget refuses the model, which it does not know priced).
    for origin in edges:
        wait_until(lambda o=origin: _explained_price(gateway, o) == 1.0, what="the file's price on each edge")
    spent, usage = _filed_cost(gateway, gateway.origin, key, user, 1)
    assert spent == pytest.approx((usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / 1e6, rel=1e-9)

    filed.write_text(_filed(3, 4))
    wait_until(lambda: _filed_price(gateway) == 3.0, what="the new file's price in metering")
    for origin in edges:
        wait_until(lambda o=origin: _explained_price(gateway, o) == 3.0, what="the new file's price on each edge")
    before = spent
    spent, usage = _filed_cost(gateway, edges[1], key, user, 2)
    assert spent - before == pytest.approx((usage["prompt_tokens"] * 3 + usage["completion_tokens"] * 4) / 1e6)

    filed.write_text("{not json")
    wait_until(lambda: "not a price file" in _price_file_error(metering), what="the broken file to be reported")
    assert _filed_price(gateway) == 3.0  # the prices in force stay
    versions = {p["version"] for p in gateway.admin("GET", "/ai/prices").json()["data"] if p["model"] == "gpt-7-filed"}

    filed.write_text(_filed(3, 4))
    gateway.stack.supervisor.stop("metering", signal.SIGKILL)
    gateway.stack.supervisor.start("metering")
    wait_until(lambda: _price_file_error(metering) == "", timeout=60, what="metering back, the file read")
    after = {p["version"] for p in gateway.admin("GET", "/ai/prices").json()["data"] if p["model"] == "gpt-7-filed"}
    assert after == versions  # the same content read again changes nothing


def _key_one_edge(gateway: Gateway, user: str) -> str:
    resp = gateway.admin(
        "POST", "/ai/keys", json={"user": user, "name": "filed", "budget_usd": 5, "budget_period": "day"}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def _explained_price(gateway: Gateway, origin: str) -> float | None:
    resp = httpx.get(
        origin + "/ai/routes/explain",
        params={"model": "gpt-7-filed"},
        headers={"authorization": f"Bearer {gateway.info.admin_key}"},
        timeout=30,
    )
    price = resp.json()["targets"][0]["price"]
    return float(price["input"]) if price else None


def _filed_price(gateway: Gateway) -> float | None:
    resp = gateway.admin("GET", "/ai/prices")
    if resp.status_code != 200:
        return None
    return next((float(p["input"]) for p in resp.json()["data"] if p["model"] == "gpt-7-filed"), None)


def _price_file_error(metering: str) -> str:
    try:
        detail = httpx.get(metering + "/readyz", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return "unreachable"
    return str(detail.get("details", {}).get("price_file", {}).get("error", "no detail"))


def test_a_price_variant_applies_only_when_the_provider_was_asked(two_edges: tuple[Gateway, list[str]]) -> None:
    """``service_tier: flex`` sent on to OpenAI is billed at flex rates (half, for gpt-5.4-mini);
    dropped for a provider that cannot honour it (Gemini, with x-switchyard-drop-params) it is
    billed at the standard rates the request ran at. Each pair on both edges: same tokens."""
    gateway, edges = two_edges
    costs: dict[str, float] = {}
    for user, model, extra, headers in (
        ("catalog-tier-standard", "gpt-5.4-mini", {}, {}),
        ("catalog-tier-flex", "gpt-5.4-mini", {"service_tier": "flex"}, {}),
        ("catalog-tier-gemini", "gemini-4-argon", {}, {}),
        (
            "catalog-tier-gemini-dropped",
            "gemini-4-argon",
            {"service_tier": "flex"},
            {"x-switchyard-drop-params": "true"},
        ),
    ):
        key = _key(gateway, user, budget_usd=5, budget_period="day")
        for origin in edges:
            resp = httpx.post(
                origin + "/v1/chat/completions",
                headers={"authorization": f"Bearer {key}", **headers},
                json={"model": model, "messages": MESSAGES, "max_tokens": 64, **extra},
                timeout=60,
            )
            assert resp.status_code == 200, resp.text
            if headers:
                assert "service_tier" in resp.headers["x-switchyard-dropped-params"]
        costs[user] = _metered(gateway, user, 2)["total_cost_usd"]
    assert costs["catalog-tier-standard"] > 0 and costs["catalog-tier-gemini"] > 0
    assert costs["catalog-tier-flex"] == pytest.approx(costs["catalog-tier-standard"] / 2, rel=1e-9)
    assert costs["catalog-tier-gemini-dropped"] == pytest.approx(costs["catalog-tier-gemini"], rel=1e-9)
