"""The routing configuration file: what parses, and how a bad file is refused (naming the line)."""

from __future__ import annotations

import pytest

from shared.gateway_config import ConfigError, RetryPolicy, parse_config

GOOD = """\
accounts:
  openai-main: {provider: openai, base_url: https://api.openai.com/v1/}
models:
  smart:
    targets: [anthropic/claude-sonnet-4-6, openai/gpt-4o, gemini/gemini-2.5-pro]
    strategy: fallback
    retry: {attempts: 2, on: [429, 5xx, timeout, connect]}
    timeouts: {first_token_seconds: 10, idle_seconds: 30, total_seconds: 600}
  spread:
    targets: [openai/gpt-4o, azure/gpt-4o]
    strategy: weighted
    weights: [3, 1]
aliases: {fast: gpt-4o-mini}
deprecated: {gpt-4-0613: gpt-4o}
"""


def test_the_issue_example_parses_with_yaml_1_2_booleans() -> None:
    config, locate = parse_config(GOOD)
    smart = config.models["smart"]
    # `on:` is a key here, not YAML 1.1's boolean True.
    assert smart.retry.on == ["429", "5xx", "timeout", "connect"] and smart.retry.attempts == 2
    assert smart.timeouts.first_token_seconds == 10 and smart.timeouts.total_seconds == 600
    assert config.accounts["openai-main"].base_url == "https://api.openai.com/v1"
    assert config.models["spread"].weights == [3, 1]
    assert config.aliases == {"fast": "gpt-4o-mini"} and config.deprecated == {"gpt-4-0613": "gpt-4o"}
    assert locate(("models", "smart", "targets", 1)) == 5
    assert locate(("models", "spread")) == 9


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("models:\n  a:\n    targets: [x/y\n", 4, "expected"),  # YAML syntax: where the parser gave up
        ("models:\n  a:\n    targets: []\n", 3, "at least 1"),
        ("models:\n  a:\n    targets: [openai/gpt-4o]\n    retry: {on: [404]}\n", 4, "not a retry cause"),
        ("models:\n  a:\n    targets: [openai/gpt-4o]\n    strategy: weighted\n", 2, "one weight per target"),
        ("models:\n  a:\n    targets: [openai/gpt-4o]\n    strategy: random\n", 4, "strategy"),
        ("accounts:\n  main:\n    provider: openai\n    base_url: ftp://x\n", 4, "http"),
        ("accounts:\n  main:\n    provider: openai\n    colour: red\n", 4, "Extra inputs"),
        ("models:\n  a/b:\n    targets: [openai/gpt-4o]\n", 1, "no '/'"),
        ("- just\n- a list\n", 1, "mapping"),
    ],
)
def test_a_bad_file_is_refused_naming_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"line {line}: ") and words in str(caught.value)


def test_an_empty_file_is_an_empty_configuration() -> None:
    config, _ = parse_config("# nothing yet\n")
    assert not config.models and not config.accounts


def test_retry_causes() -> None:
    policy = RetryPolicy(on=["429", "503", "timeout"])
    assert policy.covers("429") and policy.covers("503") and policy.covers("timeout")
    assert not policy.covers("500") and not policy.covers("connect")
    assert RetryPolicy(on=["5xx"]).covers("529")
