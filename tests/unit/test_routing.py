from __future__ import annotations

import datetime as dt

import pytest

from services.router.compile import catalog_listing, compile_routes
from services.router.settings import RouterSettings
from shared.catalog import load_catalog
from shared.gateway_config import ConfigError, GatewayConfig


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
        ("claude-sonnet", "anthropic", "claude-sonnet-5-5"),
        ("claude-opus-4-8-20261105", "anthropic", "claude-opus-4-8-20261105"),
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


def test_every_live_catalog_model_is_priced_and_listed(table) -> None:  # type: ignore[no-untyped-def]
    rows = catalog_listing(table)
    assert {r["id"] for r in rows} == {m for m, e in table.models.items() if e.retired is None}
    assert "claude-sonnet-4-5" not in {r["id"] for r in rows}  # retired on 2026-11-30
    for row in rows:
        assert table.models[str(row["id"])].priced, row["id"]
        assert row["pricing"]["version"]  # type: ignore[index]
    chat = {str(r["id"]) for r in rows if "chat" in r["capabilities"]}  # type: ignore[operator]
    assert {"claude-opus-5-5", "gpt-6.2-sol", "gemini-4-argon", "grok-4.7", "deepseek-v4-pro"} <= chat
    assert "gpt-4o-mini-tts" not in chat  # a speech model is listed and priced, not offered for chat


def test_a_dated_name_of_a_catalog_model_is_priced_as_that_model(table) -> None:  # type: ignore[no-untyped-def]
    """The dataset's match rules: a snapshot name routes as sent, billed as its catalog model."""
    route = table.resolve("claude-opus-4-8-20261105")
    assert route is not None and (route.model, route.upstream_model) == ("claude-opus-4-8", "claude-opus-4-8-20261105")
    assert route.capabilities == table.models["claude-opus-4-8"].capabilities
    unknown = table.resolve("claude-nonesuch-9")  # still routed by prefix, with no price
    assert unknown is not None and unknown.model == "claude-nonesuch-9" and "claude-nonesuch-9" not in table.models


def test_compile_rejects_a_dangling_alias() -> None:
    catalog = load_catalog()
    catalog.aliases["broken"] = "no-such-model"
    with pytest.raises(ValueError, match="broken"):
        compile_routes(catalog, {})


# --- aliases, deprecations, accounts and virtual models ------------------------------------


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("claude-sonnet", "claude-sonnet-5-5"),
        ("claude-opus", "claude-opus-5-5"),
        ("claude-haiku", "claude-haiku-5-5"),
        # Google's own gemini-pro-latest names a preview (the dataset's match rules say so)
        ("gemini-pro", "gemini-3.1-pro-preview"),
        ("gemini-flash", "gemini-3.8-flash"),
        ("gpt-latest", "gpt-6.2-sol"),
        ("gpt-mini-latest", "gpt-6-luna"),
        ("grok", "grok-4.7"),
    ],
)
def test_family_aliases_name_the_newest_live_member(table, name: str, model: str) -> None:  # type: ignore[no-untyped-def]
    plan = table.plan(name)
    assert plan is not None and plan.model == model and plan.successor is None
    assert plan.targets[0].upstream_model == model


def test_a_family_alias_skips_a_retired_member() -> None:
    catalog = load_catalog()
    catalog.models["claude-sonnet-5-5"] = catalog.models["claude-sonnet-5-5"].model_copy(
        update={"retired": dt.date(2026, 1, 1), "successor": "claude-sonnet-5"}
    )
    table = compile_routes(catalog, {}, today=dt.date(2026, 12, 1))
    assert table.plan("claude-sonnet").model == "claude-sonnet-5"  # type: ignore[union-attr]


def test_a_family_alias_waits_for_a_release_day() -> None:
    catalog = load_catalog()
    catalog.models["claude-opus-5-5"] = catalog.models["claude-opus-5-5"].model_copy(
        update={"released": dt.date(2027, 3, 1)}
    )
    table = compile_routes(catalog, {}, today=dt.date(2026, 12, 1))
    assert table.plan("claude-opus").model == "claude-opus-5"  # type: ignore[union-attr]
    later = compile_routes(catalog, {}, today=dt.date(2027, 3, 1))
    assert later.plan("claude-opus").model == "claude-opus-5-5"  # type: ignore[union-attr]


def test_a_retired_dated_name_goes_to_the_successor_the_provider_names(table) -> None:  # type: ignore[no-untyped-def]
    plan = table.plan("claude-opus-4-20250514")  # retired on 2026-06-15; Anthropic named Opus 4.8
    assert plan is not None and plan.successor == "claude-opus-4-8" and plan.model == "claude-opus-4-8"


@pytest.mark.parametrize(
    ("name", "successor"),
    [("claude-sonnet-4-5", "claude-sonnet-4-6"), ("claude-3-5-sonnet-20240620", "claude-sonnet-4-6")],
)
def test_retired_models_go_to_their_successor(table, name: str, successor: str) -> None:  # type: ignore[no-untyped-def]
    plan = table.plan(name)
    assert plan is not None and plan.successor == successor
    assert plan.targets[0].upstream_model == successor
    assert name not in table.live_models()


def test_a_retirement_day_in_the_future_keeps_the_model_live() -> None:
    table = compile_routes(load_catalog(), {}, today=dt.date(2026, 11, 29))
    plan = table.plan("claude-sonnet-4-5")
    assert plan is not None and plan.successor is None and "claude-sonnet-4-5" in table.live_models()


CONFIG = GatewayConfig.model_validate(
    {
        "accounts": {"openai-main": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {
            "smart": {
                "targets": ["anthropic/claude-sonnet-4-6", "openai-main/gpt-4o", "gemini-pro"],
                "retry": {"attempts": 2},
                "timeouts": {"first_token_seconds": 5},
            }
        },
        "aliases": {"fast": "openai-main/gpt-4o-mini"},
        "deprecated": {"gpt-4-0613": "smart"},
    }
)


def test_accounts_virtual_models_aliases_and_deprecations_compile() -> None:
    table = compile_routes(load_catalog(), {}, config=CONFIG)
    account = table.providers["openai-main"]
    assert (account.api, account.base_url, account.account_of, account.prefixes) == (
        "openai",
        "http://127.0.0.1:9/v1",
        "openai",
        [],
    )
    pinned = table.plan("openai-main/gpt-4o-mini")
    assert pinned is not None and pinned.targets[0].provider == "openai-main"
    assert pinned.targets[0].billed_provider == "openai" and pinned.targets[0].account == "openai-main"
    assert pinned.targets[0].capabilities  # the catalog model's, through the account
    smart = table.plan("smart")
    assert smart is not None and smart.virtual
    assert [t.target for t in smart.targets] == [
        "anthropic/claude-sonnet-4-6",
        "openai-main/gpt-4o",
        "gemini/gemini-3.1-pro-preview",
    ]
    assert smart.timeouts.first_token_seconds == 5 and smart.timeouts.idle_seconds == 120  # catalog default
    assert smart.timeouts.total_seconds == 3600  # no stream is unbounded unless a model says so
    plain = table.plan("gpt-4o")
    assert plain is not None and plain.timeouts.total_seconds == 3600
    assert table.plan("fast").targets[0].target == "openai-main/gpt-4o-mini"  # type: ignore[union-attr]
    old = table.plan("gpt-4-0613")
    assert old is not None and old.model == "smart" and old.successor == "smart"
    assert "smart" in table.live_models()


@pytest.mark.parametrize(
    ("name", "pinned"),
    [
        ("gpt-4o", None),  # the model's own route
        ("openai/gpt-4o", None),  # pinned where the model's name goes anyway
        ("openai-main/gpt-4o", "openai-main/gpt-4o"),  # another account
        ("echo/gpt-4o", "echo/gpt-4o"),  # another provider serving the same name
        ("azure/gpt-4o", "azure/gpt-4o"),
        ("groq/llama-3.1-8b-instant", "groq/llama-3.1-8b-instant"),  # a name only that provider serves
        ("fast", "openai-main/gpt-4o-mini"),  # an alias the operator pinned
        ("smart", None),  # a virtual model: its targets are the operator's choice
    ],
)
def test_a_plan_names_the_provider_a_request_pinned(name: str, pinned: str | None) -> None:
    plan = compile_routes(load_catalog(), {}, config=CONFIG).plan(name)
    assert plan is not None and plan.pinned == pinned


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"accounts": {"x": {"provider": "nope"}}}, "accounts.x.provider"),
        ({"accounts": {"openai": {"provider": "openai"}}}, "accounts.openai"),
        ({"models": {"m": {"targets": ["openai/gpt-4o", "nowhere/at-all"]}}}, "models.m.targets.1"),
        ({"models": {"gpt-4o": {"targets": ["openai/gpt-4o"]}}}, "models.gpt-4o"),
        ({"aliases": {"a": "no-such-thing"}}, "aliases.a"),
        ({"deprecated": {"old": "no-such-thing"}}, "deprecated.old"),
    ],
)
def test_a_configuration_that_does_not_fit_the_catalog_is_refused(config, where: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        compile_routes(load_catalog(), {}, config=GatewayConfig.model_validate(config))
    assert caught.value.where == where
