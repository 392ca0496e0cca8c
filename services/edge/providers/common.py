"""What every translating adapter shares: the unsupported-parameter rule, turns built from a
conversation, JSON Schema normalisation, provider error replies and OpenAI chunks.

A translator reads the request as the typed conversation (services/edge/canonical) and never
drops what it cannot carry: it reports the parameter to :meth:`Call.unsupported`, which fails
the request with a 400 naming it, or drops it and says so in a response header when the
client opted in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from services.edge.canonical.model import Message, System, ToolResult
from services.edge.sse import DONE, frame

if TYPE_CHECKING:
    from services.edge.providers.base import Call, Usage
from shared.apikeys import redact_secrets
from shared.errors import INVALID_REQUEST, UPSTREAM, GatewayError, kind_for_status, upstream_status_to_client

# Parameters every adapter handles itself or that only concern the gateway.
BASE_PARAMS = frozenset({"model", "messages", "stream", "stream_options"})
# What both translated providers take (each adds its own).
TRANSLATED_PARAMS = BASE_PARAMS | {
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "user",  # Anthropic: metadata.user_id; Gemini has no such field, the gateway meters it
    "tools",
    "tool_choice",
    "parallel_tool_calls",  # false: Anthropic disables parallel use; Gemini refuses it
    "response_format",
    "reasoning_effort",
}

# OpenAI error ``type`` for each client-facing status, so SDKs raise the matching class.
_RELAYED_HEADERS = ("retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")


# Values that ask for nothing beyond the default: honoured by any provider, so never refused.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logit_bias": ({},),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "store": (False,),
    "metadata": ({},),
    "service_tier": ("auto", "default"),
    "modalities": (["text"],),
}


def check_params(call: Call, supported: frozenset[str]) -> None:
    """Report every parameter of the request this provider cannot honour. An explicit null
    and a neutral value (``n: 1``, ``frequency_penalty: 0``, ``store: false``...) ask for
    nothing, so they pass; everything else outside ``supported`` is refused or dropped."""
    for name, value in call.body.items():
        if name in supported or value is None:
            continue
        if any(type(value) is type(neutral) and value == neutral for neutral in _NEUTRAL.get(name, ())):
            continue
        call.unsupported(name)


def invalid(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(INVALID_REQUEST, message, param=param, code=code)


def provider_error(
    status: int,
    message: str,
    provider: str,
    headers: Mapping[str, str],
    *,
    code: str | None = None,
    param: str | None = None,
    openai_type: str | None = None,
) -> GatewayError:
    """A provider's error reply as the OpenAI-shaped error the client gets (status mapped,
    ``retry-after`` relayed). ``openai_type`` is an OpenAI-format provider's own error type:
    its error is relayed as it wrote it (type kept for a client error, code as given, even
    none); another provider's error gets the type and code of its status."""
    # A provider may quote the key back (masked or not): the client, the key listing's reason
    # and the logs get its words without it.
    message = redact_secrets(message)
    client_status = upstream_status_to_client(status)
    kind = kind_for_status(client_status)
    relayed = {h: headers[h] for h in _RELAYED_HEADERS if h in headers}
    if openai_type is not None:
        own = openai_type if openai_type and client_status < 500 else None
        error = GatewayError(kind, message, param=param, code=code, status=client_status, headers=relayed, type=own)
    else:
        error = GatewayError(
            kind, message, param=param, code=code or kind.code, status=client_status, headers=relayed, type=kind.type
        )
    error.upstream_status = status
    if not message:
        error.message = f"provider {provider!r} answered HTTP {status}"
    return error


def parse_json_reply(raw: bytes, provider: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise GatewayError(UPSTREAM, f"provider {provider!r} sent a reply that is not JSON") from exc
    if not isinstance(parsed, dict):
        raise GatewayError(UPSTREAM, f"provider {provider!r} sent a reply that is not a JSON object")
    return parsed


REASONING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


class Turns:
    """Provider turns built from a conversation's messages: system text apart, and
    consecutive items of one role merged into one turn (Anthropic, Gemini and Bedrock
    alternate roles; tool results that follow each other become one turn)."""

    def __init__(self, items_key: str) -> None:
        self.items_key = items_key
        self.system: list[str] = []
        self.turns: list[dict[str, Any]] = []

    def add(self, role: str, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1][self.items_key].extend(items)
        else:
            self.turns.append({"role": role, self.items_key: items})

    def take(self, call: Call, where: str, message: Message, provider: str) -> bool:
        """What every such provider does alike with a message: an author name it cannot carry
        goes to :meth:`Call.unsupported`, and a system (or developer) message's text is kept
        apart. True when the message was a system message, which needs nothing more."""
        if message.name is not None and not isinstance(message, ToolResult):
            call.unsupported(f"{where}.name", f"{provider} messages have no author name")
        if isinstance(message, System):
            if message.text:
                self.system.append(message.text)
            return True
        return False

    def checked(self, provider: str) -> list[dict[str, Any]]:
        if not self.turns:
            raise invalid(
                f"{provider} needs at least one user or assistant message besides system messages.", "messages"
            )
        return self.turns


def count(value: Any) -> int:
    """A token count from a provider reply: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def count_number(value: Any) -> float:
    """A token count a provider writes as a JSON number (Cohere's ``3.0``): non-negative, else 0."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return float(value) if ok else 0.0


def path_segment(name: str) -> str:
    """``name`` (a model, a deployment) as one segment of an upstream URL's path: a ``/``,
    ``?``, ``#`` or ``%`` in it cannot reach another path or the query."""
    return quote(name, safe=":@+~")


def json_headers(call: Call, **extra: str) -> dict[str, str]:
    """Request headers for a provider that takes its key as a plain header value."""
    headers = {"content-type": "application/json", "accept": "application/json", "x-client-request-id": call.request_id}
    headers.update(extra)
    if call.credential is not None:
        scheme = call.provider.auth_scheme
        headers[call.provider.auth_header] = f"{scheme} {call.credential.secret}" if scheme else call.credential.secret
    return headers


# --- JSON Schema -------------------------------------------------------------------------


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve local ``$ref`` pointers (``#/$defs/..``, ``#/definitions/..``) in place of the
    reference, for providers that take no references. Recursive schemas are refused."""
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": value for name, value in schema[key].items()})

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in seen:
                raise invalid("recursive JSON Schemas ($ref cycles) cannot be sent to this provider.", "schema")
            if ref not in defs:
                raise invalid(f"the JSON Schema reference {ref!r} cannot be resolved.", "schema")
            merged = {**defs[ref], **{k: v for k, v in node.items() if k != "$ref"}}
            return walk(merged, (*seen, ref))
        return {k: walk(v, seen) for k, v in node.items() if k not in ("$defs", "definitions")}

    result = walk(schema, ())
    assert isinstance(result, dict)
    return result


# --- OpenAI response shapes ----------------------------------------------------------------


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object; the detail counts are zero where the provider reports none."""
    prompt_details: dict[str, int] = {"cached_tokens": usage.cached_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


class ChunkWriter:
    """Frames OpenAI ``chat.completion.chunk`` events for one translated stream.

    The fields every chunk repeats are encoded once (the hot path of a translated stream is
    one small delta per provider event); only the choice is encoded per chunk.
    """

    _DUMPS = json.JSONEncoder(separators=(",", ":")).encode

    def __init__(self, completion_id: str, model: str) -> None:
        self.model = model
        self.created = int(time.time())
        self.id = completion_id

    @property
    def id(self) -> str:
        return self._id

    @id.setter
    def id(self, value: str) -> None:
        self._id = value
        self._head = (
            b'data: {"id":' + self._DUMPS(value).encode() + b',"object":"chat.completion.chunk","created":'
            + str(self.created).encode() + b',"model":' + self._DUMPS(self.model).encode() + b',"choices":['
        )  # fmt: skip

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            payload["usage"] = usage
        return frame(json.dumps(payload, separators=(",", ":")).encode())

    def end(self, usage: Usage | None) -> list[bytes]:
        """The close of a finished stream: the usage chunk (empty ``choices``) when the client
        asked for it, then ``[DONE]``."""
        return [self.chunk([], usage_json(usage)), DONE] if usage is not None else [DONE]

    def delta(self, index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        """One choice's delta; the same bytes as :meth:`chunk` with that one choice."""
        finish = b"null" if finish_reason is None else self._DUMPS(finish_reason).encode()
        return (
            self._head + b'{"index":' + str(index).encode() + b',"delta":' + self._DUMPS(delta).encode()
            + b',"logprobs":null,"finish_reason":' + finish + b"}]}\n\n"
        )  # fmt: skip


def completion_json(completion_id: str, model: str, choices: list[dict[str, Any]], usage: dict[str, Any]) -> bytes:
    payload = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def error_event(message: str, code: str, err_type: str = "api_error") -> bytes:
    payload = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    return frame(json.dumps(payload).encode())
