"""Reading and checking request bodies: size first, then JSON, then the fields we route on.

Rejected early and cheaply: a body over the limit is refused from its Content-Length before
it is read, or as soon as the bytes read pass the limit.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.requests import Request

from shared.errors import INVALID_JSON, INVALID_REQUEST, MISSING_PARAM, REQUEST_TIMEOUT, TOO_LARGE, GatewayError


async def read_json(request: Request, limit: int, timeout: float) -> dict[str, Any]:
    return parse_json(await read_body(request, limit, timeout))


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request's bytes, refused past ``limit``, or when they take over ``timeout`` seconds
    to arrive (408: a client that trickles its body holds no connection for long)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError as exc:
            raise GatewayError(INVALID_REQUEST, "Content-Length is not a number") from exc
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError as exc:
        raise GatewayError(
            REQUEST_TIMEOUT, f"The request body did not arrive within {timeout:g} s.", headers={"connection": "close"}
        ) from exc
    return b"".join(chunks)


class _NotJson(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number (Python writes it for a float that is not finite); send a number.")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _NotJson(f"The JSON body has the key {key!a} twice in one object; send each key once.")
            seen.add(key)
    return obj


# Python's parser reads NaN, Infinity and -Infinity, which are not JSON: a provider would refuse
# the request with an error of its own, or worse, read them. It also keeps the last of a key
# written twice where another parser may keep the first: the gateway would check and meter one
# model (or limit) and the provider, handed the client's bytes, serve another. Both are 400s.
_DECODER = json.JSONDecoder(parse_constant=_constant, object_pairs_hook=_object)


# How deep objects and arrays may nest in a body (the body itself is level 1). Deeper is a 400:
# every translator and check walks a body recursively, and a body nested about a thousand
# levels (a tool's JSON Schema, say) ran one out of stack, a 500. Real requests, structured
# output schemas included, stay far below.
MAX_DEPTH = 64


def _depth_over(body: Any, limit: int) -> bool:
    """Whether ``body`` nests containers more than ``limit`` levels: a walk level by level, no
    recursion (about 40 µs for a hundred messages; a body with fewer brackets skips it)."""
    level: list[Any] = [body]
    depth = 1
    while level:
        if depth > limit:
            return True
        deeper = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
        level = deeper
        depth += 1
    return False


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise GatewayError(INVALID_JSON, "The request body is empty; send a JSON object.")
    try:
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except _NotJson as exc:
        raise GatewayError(INVALID_JSON, str(exc)) from exc
    except (ValueError, RecursionError) as exc:
        raise GatewayError(
            INVALID_JSON,
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.",
        ) from exc
    if not isinstance(body, dict):
        raise GatewayError(INVALID_JSON, "The request body must be a JSON object.")
    # A body cannot nest deeper than it has brackets: most never need the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth_over(body, MAX_DEPTH):
        raise GatewayError(
            INVALID_JSON,
            f"The JSON body nests objects and arrays more than {MAX_DEPTH} levels deep; flatten it.",
        )
    if _SURROGATE_ESCAPE.search(raw) is not None:
        where = _lone_surrogate(body, "")
        if where is not None:
            raise GatewayError(
                INVALID_JSON,
                f"The JSON body holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair) "
                f"at {ascii(where)[1:-1] or 'its top level'}: that is not Unicode text; send valid Unicode.",
            )
    return body


# JSON may spell a character outside the BMP as a pair of \uD8xx\uDCxx escapes (Python's
# json.dumps does for every emoji); one half alone decodes to a string no encoder can write, which
# would fail this request's usage event, its reply or its upstream call. Only a body with such an
# escape (or the text of one) is searched.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(value: object, path: str) -> str | None:
    """Where in ``value`` a string holds a lone surrogate (a dotted path), else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, path) if isinstance(key, str) else None
            found = found if found is not None else _lone_surrogate(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(TOO_LARGE, f"Request body is larger than the gateway's limit of {limit} bytes.")


# What providers name their models (``gpt-4o``, ``claude-3-5-sonnet@20240620``,
# ``anthropic.claude-3-5-sonnet-20240620-v1:0``, ``accounts/fireworks/models/llama-v3p1-8b``):
# parts of letters, digits and ``. _ - : @ + ~`` joined by ``/``, none empty, none starting with a
# dot (so no ``.`` or ``..`` part); nothing that could change an upstream URL's path or query.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_~][A-Za-z0-9._:@+~\-]*(?:/[A-Za-z0-9_~][A-Za-z0-9._:@+~\-]*)*")
MAX_MODEL_NAME = 256


# How long the arrays of a request may be, as OpenAI's API bounds them (content parts: no
# provider documents a bound; this one is far past any real request). Longer is a 400 naming
# the array, before any work.
MAX_MESSAGES = 2048
MAX_CONTENT_PARTS = 1024
MAX_TOOLS = 128
MAX_EMBEDDING_INPUTS = 2048
MAX_CHOICES = 128  # OpenAI's bound on ``n``


def check_length(items: list[Any], limit: int, param: str) -> None:
    if len(items) > limit:
        raise GatewayError(
            INVALID_REQUEST,
            f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, but got an array "
            f"with length {len(items)} instead.",
            param=param,
            code="array_above_max_length",
        )


def check_model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise GatewayError(MISSING_PARAM, "you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(INVALID_REQUEST, "model must be a non-empty string", param="model")
    if len(model) > MAX_MODEL_NAME or _MODEL_NAME.fullmatch(model) is None:
        raise GatewayError(
            INVALID_REQUEST,
            f"The model name {model[:100]!a} is not valid: a model name is made of letters, digits and "
            f". _ - : @ + ~, in parts joined by '/' (none empty or starting with a dot), at most "
            f"{MAX_MODEL_NAME} characters.",
            param="model",
        )


def check_chat(body: dict[str, Any]) -> None:
    """The fields the gateway itself needs; the provider checks the rest."""
    check_model(body)
    messages = body.get("messages")
    if messages is None:
        raise GatewayError(MISSING_PARAM, "Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(INVALID_REQUEST, "'messages' must be a non-empty array.", param="messages")
    check_length(messages, MAX_MESSAGES, "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise GatewayError(
                INVALID_REQUEST, f"messages[{i}] must be an object with a string 'role'.", param=f"messages[{i}]"
            )
        content = message.get("content")
        if isinstance(content, list):
            check_length(content, MAX_CONTENT_PARTS, f"messages[{i}].content")
    tools = body.get("tools")
    if isinstance(tools, list):
        check_length(tools, MAX_TOOLS, "tools")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise GatewayError(INVALID_REQUEST, "'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise GatewayError(INVALID_REQUEST, "'stream_options' must be an object.", param="stream_options")
    for name in ("max_tokens", "max_completion_tokens"):
        check_positive_int(body, name)
    check_positive_int(body, "n", MAX_CHOICES)
    check_user(body)


def check_responses(body: dict[str, Any]) -> None:
    """A Responses API request: its model, its output limit, and no ``background`` run.

    A background response is answered ``queued`` with no usage, and its cost is known only
    when it finishes, maybe hours later, at the provider: it would be neither reserved nor
    metered as it costs, so the gateway refuses it (docs/limits.md)."""
    check_model(body)
    check_positive_int(body, "max_output_tokens")
    if body.get("background") not in (None, False):
        raise GatewayError(
            INVALID_REQUEST,
            "background responses are not supported by this gateway: their usage is known only when they "
            "finish, so they could not be held to limits and budgets or metered. Send the request without "
            "'background' (stream it for long runs).",
            param="background",
            code="unsupported_parameter",
        )


def check_positive_int(body: dict[str, Any], name: str, most: int | None = None) -> None:
    """A field that must be a positive integer when present (a token limit, a choice count):
    the reservation is made from it, so ``true``, ``12.5`` or ``"8"`` cannot pass unchecked."""
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise GatewayError(
            INVALID_REQUEST,
            f"Invalid type for '{name}': expected an integer, but got {_kind(value)} instead.",
            param=name,
            code="invalid_type",
        )
    if value < 1:
        raise GatewayError(
            INVALID_REQUEST,
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if most is not None and value > most:
        raise GatewayError(
            INVALID_REQUEST,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {most}, but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a value of another type"


def check_user(body: dict[str, Any]) -> None:
    """``user`` (the end user a client names; stored with the request's usage) is a string."""
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise GatewayError(INVALID_REQUEST, "'user' must be a string.", param="user")


def error_path(body: Any, loc: tuple[int | str, ...]) -> list[int | str]:
    """Where in ``body`` a pydantic error is, as the client wrote it: the location without
    the union branches and tagged-union tags pydantic adds (``str``, ``list[...]``, a
    block's ``type`` value), found by walking the body itself. A field that is missing is
    the location's last part."""
    path: list[int | str] = []
    node: Any = body
    tag_skipped = False
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part == node.get("type") and not tag_skipped:
            tag_skipped = True  # the tag of the union branch this object matched
            continue
        if isinstance(node, dict) and part in node:
            path.append(part)
            node, tag_skipped = node[part], False
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node, tag_skipped = node[part], False
        elif last and isinstance(node, dict):
            path.append(part)  # a required field the object lacks
    return path
