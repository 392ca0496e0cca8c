from __future__ import annotations

import pytest

from services.router.compile import catalog_listing, compile_routes
from services.router.settings import RouterSettings
from shared.catalog import load_catalog


@pytest.fixture()
def table():  # type: ignore[no-untyped-def]
    return compile_routes(load_catalog(), {})


@pytest.mark.parametrize(
    ("name", "provider", "upstream"),
    [
        ("gpt-4o", "openai", "gpt-4o"),
        ("gpt-5-preview", "openai", "gpt-5-preview"),
        ("o1", "openai", "o1"),
        ("o3-mini", "openai", "o3-mini"),
        ("o4-mini", "openai", "o4-mini"),
        ("claude-3-7-sonnet-latest", "anthropic", "claude-3-7-sonnet-latest"),
        ("gemini-2.0-flash", "gemini", "gemini-2.0-flash"),
        ("grok-3", "xai", "grok-3"),
        ("mistral-medium-latest", "mistral", "mistral-medium-latest"),
        ("codestral-2501", "mistral", "codestral-2501"),
        ("deepseek-chat", "deepseek", "deepseek-chat"),
        ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
        ("together/meta-llama/Llama-3-8b", "together", "meta-llama/Llama-3-8b"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("openai/gpt-4o", "openai", "gpt-4o"),
        ("echo/anything", "echo", "anything"),
        ("echo/echo-1", "echo", "echo-1"),
        ("claude-sonnet", "anthropic", "claude-sonnet-4-6"),
    ],
)
def test_resolution(table, name: str, provider: str, upstream: str) -> None:  # type: ignore[no-untyped-def]
    route = table.resolve(name)
    assert route is not None
    assert (route.provider, route.upstream_model) == (provider, upstream)


@pytest.mark.parametrize("name", ["o10", "llama3", "unknown/gpt-4o", "", "gpt", "claude"])
def test_unroutable_names(table, name: str) -> None:  # type: ignore[no-untyped-def]
    assert table.resolve(name) is None


def test_base_url_overrides_come_from_provider_env() -> None:
    settings = RouterSettings(OPENAI_BASE_URL="http://127.0.0.1:9/v1/", GEMINI_BASE_URL="http://g")
    table = compile_routes(load_catalog(), settings.base_url_overrides())
    assert table.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert table.providers["gemini"].base_url == "http://g"
    assert table.providers["xai"].base_url == "https://api.x.ai/v1"


def test_api_versions_come_from_the_catalog_or_the_operator() -> None:
    table = compile_routes(load_catalog(), {}, None, RouterSettings().api_versions())
    assert (table.providers["anthropic"].api_version, table.providers["azure"].api_version) == (
        "2023-06-01",
        "2024-10-21",
    )
    settings = RouterSettings(ANTHROPIC_API_VERSION="2026-10-21", AZURE_API_VERSION="2025-04-01-preview")
    table = compile_routes(load_catalog(), {}, None, settings.api_versions())
    assert (table.providers["anthropic"].api_version, table.providers["azure"].api_version) == (
        "2026-10-21",
        "2025-04-01-preview",
    )


def test_every_catalog_model_is_priced_and_listed(table) -> None:  # type: ignore[no-untyped-def]
    rows = catalog_listing(table)
    assert {r["id"] for r in rows} == set(table.models)
    for row in rows:
        assert row["pricing"]["input"] >= 0 and row["pricing"]["output"] >= 0  # type: ignore[index]
        assert row["capabilities"]


def test_compile_rejects_a_dangling_alias() -> None:
    catalog = load_catalog()
    catalog.aliases["broken"] = "no-such-model"
    with pytest.raises(ValueError, match="broken"):
        compile_routes(catalog, {})
