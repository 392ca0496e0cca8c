"""What every translating adapter shares: the unsupported-parameter rule, content parts,
tool-call arguments, JSON Schema normalisation, provider error replies and OpenAI chunks.

The client's schema (OpenAI's) is canonical. A translator reads it with these helpers and
never drops what it cannot carry: it reports the parameter to :meth:`Call.unsupported`, which
fails the request with a 400 naming it, or drops it and says so in a response header when the
client opted in.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.edge.sse import DONE, frame

if TYPE_CHECKING:
    from services.edge.providers.base import Call, Usage
from shared.errors import INVALID_REQUEST, UPSTREAM, ErrorKind, GatewayError, kind_for_status, upstream_status_to_client

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
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
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
) -> GatewayError:
    """A provider's error reply as the OpenAI-shaped error the client gets (status mapped,
    ``retry-after`` relayed)."""
    client_status = upstream_status_to_client(status)
    kind = kind_for_status(client_status)
    err_type = _TYPE_BY_STATUS.get(client_status, "api_error")
    relayed = {h: headers[h] for h in _RELAYED_HEADERS if h in headers}
    error = GatewayError(kind, message, param=param, code=code or kind.code, status=client_status, headers=relayed)
    error.kind = ErrorKind(client_status, err_type, code or kind.code, kind.log_level)
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


# --- request reading ---------------------------------------------------------------------


def max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise invalid(f"'{name}' must be a positive integer.", name)
        return value
    return None


def stop_sequences(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise invalid("'stop' must be a string or an array of strings.", "stop")


def text_of(content: Any, where: str) -> str:
    """The text of a message whose content must be text (system, tool results)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"{where}.content[{i}] must be a text part here.", f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise invalid(f"{where}.content must be a string or an array of parts.", f"{where}.content")


def part_text(part: dict[str, Any], param: str) -> str:
    """The text of a ``text`` content part, checked."""
    if not isinstance(part.get("text"), str):
        raise invalid("a text part needs a string 'text'.", param)
    return str(part["text"])


def content_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """A message's content as a list of OpenAI parts (a string becomes one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise invalid(f"{where}.content[{i}] must be an object with a 'type'.", f"{where}.content")
        return content
    raise invalid(f"{where}.content must be a string or an array of parts.", f"{where}.content")


# Common misspellings of registered MIME types, as clients send them.
_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[^;,]*)*)(;base64)?,(.*)$", re.DOTALL)


@dataclass
class Media:
    """An inline file (image, PDF, audio, video): MIME type and base64 data, checked."""

    mime: str
    data: str  # base64


def data_uri(uri: str, param: str) -> Media:
    """Parse and check a ``data:`` URI; broken base64 is a 400 naming the part."""
    match = _DATA_URI.match(uri)
    if match is None or match.group(3) is None:
        raise invalid("a data URI must look like data:<mime>;base64,<data>.", param, "invalid_data_uri")
    mime = (match.group(1) or "").lower()
    if not mime:
        raise invalid("the data URI has no MIME type.", param, "invalid_data_uri")
    mime = _MIME_ALIASES.get(mime, mime)
    return Media(mime=mime, data=checked_base64(match.group(4), param))


def checked_base64(data: str, param: str) -> str:
    data = re.sub(r"\s+", "", data)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid("the base64 data is not valid base64.", param, "invalid_base64") from exc
    if not raw:
        raise invalid("the base64 data is empty.", param, "invalid_base64")
    return data


def image_url_of(part: dict[str, Any], param: str) -> tuple[str, str | None]:
    """``(url, detail)`` of an ``image_url`` part (``image_url.image_url`` is taken for the
    URL too, as some gateways' pages write it)."""
    image = part.get("image_url")
    if isinstance(image, str):
        return image, None
    if isinstance(image, dict) and "url" not in image and isinstance(image.get("image_url"), str):
        image = {**image, "url": image["image_url"]}
    if not isinstance(image, dict) or not isinstance(image.get("url"), str) or not image["url"]:
        raise invalid("an image_url part needs image_url.url.", param)
    detail = image.get("detail")
    if detail is not None and detail not in ("auto", "low", "high"):
        raise invalid("image_url.detail must be auto, low or high.", param)
    return image["url"], detail


def declared_mime(part: dict[str, Any], param: str) -> str | None:
    """The MIME type an ``image_url`` part declares for what it points at
    (``image_url.mime_type``: audio and video for Gemini, as TrueFoundry's page sends them)."""
    image = part.get("image_url")
    value = image.get("mime_type") if isinstance(image, dict) else None
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", value):
        raise invalid("image_url.mime_type must be a MIME type such as audio/mp3 or video/mp4.", param)
    value = value.lower()
    return _MIME_ALIASES.get(value, value)


def file_of(part: dict[str, Any], param: str) -> tuple[Media, str | None]:
    """The inline file of a ``file`` part: ``file.file_data`` as a data URI (OpenAI's shape), or
    ``file.data`` in base64 with ``file.media_type`` (the Vercel AI Gateway's)."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise invalid("a file part needs a 'file' object.", param)
    filename = file.get("filename") if isinstance(file.get("filename"), str) else None
    if isinstance(file.get("data"), str) and "file_data" not in file:
        value = file["data"]
        if value.startswith("data:"):
            return data_uri(value, param), filename
        mime = file.get("media_type")
        if not isinstance(mime, str) or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", mime):
            raise invalid("file.data needs file.media_type (for example application/pdf).", param)
        mime = mime.lower()
        return Media(mime=_MIME_ALIASES.get(mime, mime), data=checked_base64(value, param)), filename
    if isinstance(file.get("file_data"), str):
        value = file["file_data"]
        if value.startswith("data:"):
            return data_uri(value, param), filename
        mime = "application/pdf" if (filename or "").lower().endswith(".pdf") else ""
        if not mime:
            raise invalid("file.file_data must be a data URI (data:<mime>;base64,...).", param, "invalid_data_uri")
        return Media(mime=mime, data=checked_base64(value, param)), filename
    if "file_id" in file:
        raise invalid(
            "file_id refers to a file uploaded to OpenAI; this provider needs the file inline (file.file_data).",
            param,
            "unsupported_parameter",
        )
    raise invalid("a file part needs file.file_data (a data URI), or file.data with file.media_type.", param)


_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "ogg": "audio/ogg", "aac": "audio/aac"}


def audio_of(part: dict[str, Any], param: str) -> Media:
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise invalid("an input_audio part needs input_audio.data.", param)
    fmt = audio.get("format")
    if fmt not in _AUDIO_MIME:
        raise invalid(f"input_audio.format must be one of {', '.join(_AUDIO_MIME)}.", param)
    return Media(mime=_AUDIO_MIME[str(fmt)], data=checked_base64(audio["data"], param))


def tool_arguments(call: dict[str, Any], param: str) -> dict[str, Any]:
    """The arguments of an assistant tool call as an object (the wire carries a JSON string)."""
    if not isinstance(call, dict):
        raise invalid("a tool call must be an object.", param)
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise invalid("a tool call needs function.name.", param)
    args = fn.get("arguments")
    if args is None or args == "":
        return {}
    if isinstance(args, dict):
        return args
    if not isinstance(args, str):
        raise invalid("function.arguments must be a JSON string.", param)
    try:
        parsed = json.loads(args)
    except ValueError as exc:
        raise invalid("function.arguments is not valid JSON.", param) from exc
    if not isinstance(parsed, dict):
        raise invalid("function.arguments must encode a JSON object.", param)
    return parsed


def tools_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The function tools of a request, checked: ``[{name, description, parameters}]``."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("'tools' must be an array.", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise invalid(f"tools[{i}] must be a function tool.", f"tools[{i}]")
        fn = tool["function"]
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise invalid(f"tools[{i}].function.name is required.", f"tools[{i}].function.name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid(f"tools[{i}].function.parameters must be an object.", f"tools[{i}].function.parameters")
        out.append(
            {
                "name": fn["name"],
                "description": fn.get("description") if isinstance(fn.get("description"), str) else None,
                "parameters": params or {"type": "object", "properties": {}},
            }
        )
    return out


def tool_choice_of(body: dict[str, Any], tool_names: list[str]) -> str | tuple[str, str] | None:
    """``auto`` / ``none`` / ``required``, ``("function", name)``, or None when absent."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or name not in tool_names:
            raise invalid("tool_choice names a function that is not in 'tools'.", "tool_choice")
        return ("function", name)
    raise invalid("tool_choice must be auto, none, required or a named function.", "tool_choice")


def response_format_of(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str]:
    """``(kind, schema, name)`` with kind ``text``, ``json_object`` or ``json_schema``."""
    fmt = body.get("response_format")
    if fmt is None:
        return "text", None, ""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("response_format.type must be text, json_object or json_schema.", "response_format")
    if fmt["type"] != "json_schema":
        return str(fmt["type"]), None, ""
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise invalid("response_format.json_schema needs a name.", "response_format.json_schema")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise invalid("response_format.json_schema.schema must be an object.", "response_format.json_schema.schema")
    return "json_schema", schema, spec["name"]


REASONING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


def reasoning_effort(body: dict[str, Any]) -> str | None:
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in ("none", *REASONING_BUDGETS):
        raise invalid("reasoning_effort must be none, minimal, low, medium or high.", "reasoning_effort")
    return str(effort)


def assistant_text(message: dict[str, Any], where: str) -> str:
    """The text of an assistant message (text and refusal parts joined)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "refusal")
        )
    return text_of(content, where)


class Turns:
    """Provider turns built from OpenAI messages: system text apart, and consecutive items
    of one role merged into one turn (both providers alternate roles; tool results that
    follow each other become one turn)."""

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

    def message(self, call: Call, i: int, message: dict[str, Any], provider: str) -> tuple[str, str]:
        """``(where, role)`` of message ``i``; a system message's text is kept here, and an
        author ``name`` the provider cannot carry goes to :meth:`Call.unsupported`."""
        where, role = f"messages[{i}]", str(message["role"])
        if message.get("name") is not None and role in ("user", "assistant", "system", "developer"):
            call.unsupported(f"{where}.name", f"{provider} messages have no author name")
        if role in ("system", "developer"):
            text = text_of(message.get("content"), where)
            if text:
                self.system.append(text)
        elif role not in ("user", "assistant", "tool"):
            raise invalid(f"{where}.role {role!r} is not one of system, developer, user, assistant, tool.", where)
        return where, role

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
