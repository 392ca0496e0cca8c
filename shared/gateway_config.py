"""The operator's routing configuration: named provider accounts, virtual models with their
targets and policies, aliases and deprecations.

It comes from the YAML file ``GATEWAY_CONFIG`` names (read by the router, reloaded on change
and on SIGHUP) and from the admin API (``/ai/routes``, ``/ai/accounts``; kept in NATS KV).
An invalid file is refused with a message that names the line; the running configuration
stays.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"  # a route or account name: no "/" (that pins a provider)
RETRY_CAUSES = ("429", "5xx", "timeout", "connect")


class ConfigError(ValueError):
    """A configuration that cannot be used; ``line`` is 1-based when it came from a file."""

    def __init__(self, message: str, line: int | None = None, where: str = "") -> None:
        self.message = message
        self.line = line
        self.where = where
        prefix = f"line {line}: " if line else ""
        located = f"{where}: " if where else ""
        super().__init__(f"{prefix}{located}{message}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Account(_Strict):
    """A named provider account: a provider's wire API at its own base URL with its own keys,
    reached as ``<account>/<model>``."""

    provider: str = Field(min_length=1, max_length=64, description="the catalog provider it is an account of")
    base_url: str | None = Field(default=None, max_length=2048)
    api_version: str | None = Field(default=None, max_length=64)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value


class RetryPolicy(_Strict):
    """How often one target is tried, and for which failures. ``on`` lists causes: ``429``,
    ``5xx`` (any 5xx) or a single 5xx status, ``timeout``, ``connect``."""

    attempts: int = Field(default=1, ge=1, le=10, description="tries per target, the first included")
    on: list[str] = Field(default_factory=lambda: list(RETRY_CAUSES))
    backoff_seconds: float = Field(default=0.25, ge=0, le=30, description="first wait; doubles each try")
    max_wait_seconds: float = Field(
        default=10.0, ge=0, le=300, description="a longer retry-after moves on to the next target instead"
    )

    @field_validator("on", mode="before")
    @classmethod
    def _causes(cls, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise ValueError("must be a list such as [429, 5xx, timeout, connect]")
        out = []
        for item in value:
            cause = str(item).lower()
            if cause not in RETRY_CAUSES and not re.fullmatch(r"5\d\d", cause):
                raise ValueError(f"{item!r} is not a retry cause (429, 5xx, a 5xx status, timeout, connect)")
            out.append(cause)
        return out

    def covers(self, cause: str) -> bool:
        """Whether a failure of this cause (``429``, ``503``, ``timeout``, ``connect``) is retried."""
        if cause in self.on:
            return True
        return bool(re.fullmatch(r"5\d\d", cause)) and "5xx" in self.on


class Timeouts(_Strict):
    """Bounds on one attempt (first token: before anything reached the client, so a miss falls
    back) and on the stream once it flows (idle, total)."""

    first_token_seconds: float | None = Field(default=None, gt=0, le=3600)
    idle_seconds: float | None = Field(default=None, gt=0, le=3600)
    total_seconds: float | None = Field(default=None, gt=0, le=86400)

    def over(self, defaults: Timeouts) -> Timeouts:
        """These, with ``defaults`` where unset."""
        return Timeouts(
            first_token_seconds=self.first_token_seconds or defaults.first_token_seconds,
            idle_seconds=self.idle_seconds or defaults.idle_seconds,
            total_seconds=self.total_seconds or defaults.total_seconds,
        )


Strategy = Literal["fallback", "weighted", "cheapest", "fastest"]


class VirtualModel(_Strict):
    """A model name clients call that the gateway serves from one of several targets."""

    targets: list[str] = Field(min_length=1, max_length=16)
    strategy: Strategy = "fallback"
    weights: list[float] | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @model_validator(mode="after")
    def _weights(self) -> VirtualModel:
        if self.strategy == "weighted":
            if self.weights is None or len(self.weights) != len(self.targets):
                raise ValueError("strategy 'weighted' needs one weight per target")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be non-negative and not all zero")
        elif self.weights is not None:
            raise ValueError("weights are only for strategy 'weighted'")
        return self


class GatewayConfig(_Strict):
    accounts: dict[str, Account] = Field(default_factory=dict)
    models: dict[str, VirtualModel] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    deprecated: dict[str, str] = Field(default_factory=dict, description="old name -> successor")

    @model_validator(mode="after")
    def _names(self) -> GatewayConfig:
        for section in ("accounts", "models"):
            for name in getattr(self, section):
                if not re.fullmatch(NAME, name):
                    raise ValueError(f"{section} name {name!r} must be letters, digits and . _ : @ - (no '/')")
        return self

    def merged(self, other: GatewayConfig) -> GatewayConfig:
        """This configuration with ``other``'s objects added (``other`` wins on a name)."""
        return GatewayConfig(
            accounts={**self.accounts, **other.accounts},
            models={**self.models, **other.models},
            aliases={**self.aliases, **other.aliases},
            deprecated={**self.deprecated, **other.deprecated},
        )


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """YAML 1.2 booleans: only ``true``/``false`` (1.1 also reads ``on``, ``yes``, ``no`` as
    booleans, which would turn the retry policy's ``on:`` key into ``True``)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

Locator = Callable[[tuple[str | int, ...]], int | None]


def parse_config(text: str) -> tuple[GatewayConfig, Locator]:
    """Parse YAML text into a configuration, and a locator: the 1-based line of a path of keys.

    Raises :class:`ConfigError` naming the line of the first problem."""
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # a safe loader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(str(exc.problem or exc.context or "invalid YAML"), mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}") from exc

    def locate(path: tuple[str | int, ...]) -> int | None:
        return _line_of(root, path)

    if data is None:
        return GatewayConfig(), locate
    if not isinstance(data, dict):
        raise ConfigError("the file must be a mapping with accounts, models, aliases and deprecated", 1)
    try:
        return GatewayConfig.model_validate(data), locate
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first.get("loc", ()) if isinstance(p, str | int))
        where = ".".join(str(p) for p in loc)
        raise ConfigError(first.get("msg", "invalid value"), locate(loc), where) from exc


def _line_of(node: yaml.Node | None, path: tuple[str | int, ...]) -> int | None:
    """The line of the deepest node along ``path`` (the line of the key for a mapping entry)."""
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = int(key.start_mark.line) + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = int(node.start_mark.line) + 1
        else:
            return line
    return line
