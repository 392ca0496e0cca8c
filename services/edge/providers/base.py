"""The adapter interface every provider wire API implements.

An adapter takes the OpenAI-format request (``Call.body``; a translating adapter reads it as the
typed :class:`~services.edge.canonical.model.Conversation`, ``Call.conversation``) and returns
OpenAI-format bytes, plus the usage it observed. A parameter the provider cannot honour is
refused (400, ``unsupported_parameter``) or dropped on request by ``Call.unsupported``; a
provider whose wire API the gateway cannot call at all raises :class:`ProviderNotCallable`
(501, ``unsupported_provider``).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import aiohttp

from services.edge.canonical import chat as canonical_chat
from services.edge.canonical.model import Conversation
from shared.catalog import ProviderConfig, Route

if TYPE_CHECKING:
    from services.edge.media import MediaFetcher
from shared.errors import NOT_IMPLEMENTED, UNSUPPORTED, GatewayError


class ProviderNotCallable(GatewayError):
    """The gateway cannot call this provider's wire API (for this endpoint): 501."""

    def __init__(self, message: str) -> None:
        super().__init__(NOT_IMPLEMENTED, message)


@dataclass
class Credential:
    key_id: str
    secret: str
    # Per model (providers rate-limit per model): monotonic time until which not to use it.
    cooldown_until: dict[str, float] = field(default_factory=dict)

    def cooling(self, model: str, now: float) -> bool:
        return self.cooldown_until.get(model, 0.0) > now


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # the writes with a 1-hour TTL (Anthropic), part of cache_write_tokens
    reasoning_tokens: int = 0
    estimated: bool = False

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            cached_tokens=_int(prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0),
            cache_write_tokens=_int(
                prompt_details.get("cache_write_tokens") if isinstance(prompt_details, dict) else 0
            ),
            reasoning_tokens=_int(
                completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else 0
            ),
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def estimate_tokens(chars: int) -> int:
    """A provider-neutral estimate (about four characters a token) for when none is reported."""
    return math.ceil(chars / 4) if chars > 0 else 0


def prompt_chars(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += len(part["text"])
    return total


@dataclass
class Call:
    """One upstream call: where it goes, with what, for whom."""

    route: Route
    provider: ProviderConfig
    credential: Credential | None
    body: dict[str, Any]
    request_id: str
    http: aiohttp.ClientSession
    # The client asked to drop parameters this provider cannot honour instead of failing.
    drop_params: bool = False
    dropped: list[str] = field(default_factory=list)
    media: MediaFetcher | None = None
    # The request's bytes as the client sent them, when ``body`` is exactly their parse (else
    # empty): a pass-through sends them on untouched.
    raw: bytes = b""

    def unsupported(self, param: str, why: str = "") -> None:
        """A parameter this provider cannot honour: a 400 naming it, or dropped on request."""
        if self.drop_params:
            if param not in self.dropped:
                self.dropped.append(param)
            return
        reason = f" ({why})" if why else ""
        raise GatewayError(
            UNSUPPORTED,
            f"Parameter '{param}' is not supported by provider {self.route.provider!r}{reason}. "
            "Remove it, or send the header 'x-switchyard-drop-params: true' to have it dropped.",
            param=param,
        )

    @cached_property
    def conversation(self) -> Conversation:
        """The request, checked and typed (read on first use: the OpenAI pass-through never
        needs it)."""
        return canonical_chat.read(self.body)

    @property
    def wants_usage_chunk(self) -> bool:
        opts = self.body.get("stream_options")
        return isinstance(opts, dict) and opts.get("include_usage") is True


@dataclass
class Completion:
    body: bytes
    usage: Usage
    upstream_ms: float


@dataclass
class StreamMeter:
    """What a stream delivered so far; filled in by the adapter as events pass."""

    started: float = field(default_factory=time.perf_counter)
    first_chunk_at: float | None = None
    upstream_done_at: float | None = None
    usage: Usage | None = None
    # The provider's own prompt count, when it gave one before the stream ended (Anthropic's
    # message_start, Gemini's running usage): exact even for a stream cut short.
    prompt_tokens: int | None = None
    content_chars: int = 0
    finished: bool = False
    error_type: str = ""

    def saw_content(self, chars: int) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()
        self.content_chars += chars

    def final_usage(self, body: dict[str, Any]) -> Usage:
        if self.usage is not None:
            return self.usage
        prompt = self.prompt_tokens if self.prompt_tokens is not None else estimate_tokens(prompt_chars(body))
        return Usage(prompt_tokens=prompt, completion_tokens=estimate_tokens(self.content_chars), estimated=True)


class Adapter(Protocol):
    """One provider wire API."""

    async def chat(self, call: Call) -> Completion: ...

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        """Open the stream (raising a GatewayError if the provider refuses it) and return
        an iterator of complete SSE events in OpenAI's format, ``data: {...}\\n\\n``."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """A wire API with an embeddings endpoint: OpenAI-format request in, OpenAI-format reply out."""

    async def embed(self, call: Call) -> Completion: ...
