"""Anthropic's Messages API (``POST /v1/messages``) behind OpenAI's chat schema.

Request: system and developer messages become ``system``; consecutive tool results become one
user turn of ``tool_result`` blocks; images (base64 or URL) and PDFs become ``image`` and
``document`` blocks; tools and ``tool_choice`` map one to one; ``reasoning_effort`` becomes a
thinking budget; ``response_format`` ``json_schema`` becomes ``output_config.format`` (native
structured outputs) for the models the catalog lists with ``json_schema``, with the schema
normalised to the subset Anthropic accepts; otherwise, and for ``json_object``, a forced tool
whose input is the JSON answer.

Reply: text, ``reasoning_content`` (thinking), ``thinking_blocks`` (thinking with its
signature, to send back on the next turn) and ``tool_calls``; usage with cached and thinking tokens;
``finish_reason`` mapped. Streams are translated event by event by :class:`AnthropicStream`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import TypeAdapter

from services.edge.canonical import openai_chat
from services.edge.canonical.model import (
    Answer,
    Assistant,
    Choice,
    Conversation,
    File,
    Finish,
    Image,
    NamedTool,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolResult,
    User,
)
from services.edge.providers import anthropic_replies, common
from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.providers.common import ChunkWriter, invalid
from services.edge.providers.wire import open_stream, post_json, read_reply, relay
from shared.errors import GatewayError

API_VERSION = "2023-06-01"  # when the route table names none (the catalog does)
SAMPLING_REMOVED = "2026-10-21"  # the first API version without temperature and top_p
JSON_TOOL = "json_response"  # the forced tool that carries a response_format answer
DEFAULT_MAX_TOKENS = 4096
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

SUPPORTED = common.TRANSLATED_PARAMS

FINISH: dict[str, Finish] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_ERROR_CODES = {
    "invalid_request_error": None,
    "authentication_error": "invalid_api_key",
    "permission_error": None,
    "not_found_error": "model_not_found",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit_exceeded",
    "api_error": "upstream_error",
    "overloaded_error": "overloaded",
}

_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


# The JSON Schema subset of Anthropic's structured outputs: what each type may carry. Other
# keywords (numeric and length bounds, patterns, most array bounds) are not accepted; they go
# into the description, where the model can still read them.
_STRING_FORMATS = frozenset(
    ("date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid")
)
_SCALARS = (str, int, float, bool, type(None))


def anthropic_schema(schema: Any) -> dict[str, Any] | None:
    """``schema`` in the form Anthropic's structured outputs accept, or None when it cannot be
    said there (an object open to extra properties: Anthropic closes every object)."""
    try:
        return _strict(schema)
    except _Unsayable:
        return None


class _Unsayable(Exception):
    pass


def _strict(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise _Unsayable
    rest = dict(schema)
    out: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        defs = rest.pop(key, None)
        if isinstance(defs, dict):
            out[key] = {name: _strict(sub) for name, sub in defs.items()}
    if isinstance(rest.get("$ref"), str):
        out["$ref"] = rest["$ref"]
        return out
    if rest.pop("nullable", False) is True:  # OpenAPI's way to say "or null"
        return {**out, "anyOf": [_strict(rest), {"type": "null"}]}
    kind = rest.pop("type", None)
    if isinstance(kind, list):  # ["string", "null"]: one branch a type
        if not kind or not all(isinstance(k, str) for k in kind):
            raise _Unsayable
        if len(kind) > 1:
            notes = {key: rest.pop(key) for key in ("description", "title") if isinstance(rest.get(key), str)}
            return {**out, **notes, "anyOf": [_strict({**rest, "type": k}) for k in kind]}
        kind = kind[0]
    for key in ("description", "title"):
        if isinstance(rest.get(key), str):
            out[key] = rest.pop(key)
    literal = False
    enum = rest.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, _SCALARS) for v in enum):
        out["enum"] = rest.pop("enum")
        literal = True
    if "const" in rest and isinstance(rest["const"], _SCALARS):
        out["const"] = rest.pop("const")
        literal = True
    branches = [key for key in ("anyOf", "oneOf", "allOf") if isinstance(rest.get(key), list)]
    if branches:
        key = branches[0]
        out["allOf" if key == "allOf" else "anyOf"] = [_strict(sub) for sub in rest.pop(key)]
    elif not literal:
        if not isinstance(kind, str):
            raise _Unsayable
        out["type"] = kind
    if kind == "object":
        extra = rest.pop("additionalProperties", False)
        if extra is not False:
            raise _Unsayable
        props = rest.pop("properties", {})
        if not isinstance(props, dict):
            raise _Unsayable
        out["properties"] = {name: _strict(sub) for name, sub in props.items()}
        out["additionalProperties"] = False
        if isinstance(rest.get("required"), list):
            out["required"] = rest.pop("required")
    elif kind == "string" and rest.get("format") in _STRING_FORMATS:
        out["format"] = rest.pop("format")
    elif kind == "array":
        if "items" in rest:
            out["items"] = _strict(rest.pop("items"))
        if rest.get("minItems") in (0, 1):
            out["minItems"] = rest.pop("minItems")
    for key in ("anyOf", "oneOf", "allOf", "type"):
        rest.pop(key, None)
    if rest:  # what Anthropic cannot enforce, told to the model instead
        note = ", ".join(f"{key}: {json.dumps(value)}" for key, value in rest.items())
        out["description"] = (out["description"] + "\n\n" if "description" in out else "") + "{" + note + "}"
    return out


def _sampling(call: Call) -> dict[str, Any]:
    """``temperature`` and ``top_p`` as Anthropic takes them: temperature from 0 to 1 (OpenAI's
    goes to 2), and one of the two, not both ("cannot both be specified for this model"). When
    one of them is at its default (top_p 1, temperature 1) it is left out, which changes
    nothing; otherwise ``top_p`` is refused, or dropped on request. From API version
    2026-10-21 on, neither exists: any other value is refused, or dropped on request."""
    temperature, top_p = call.conversation.temperature, call.conversation.top_p
    if _version(call) >= SAMPLING_REMOVED:
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if value is not None and value != 1:
                call.unsupported(name, f"Anthropic API version {_version(call)} has no sampling parameters")
        return {}
    if temperature is not None and not 0 <= temperature <= 1:
        call.unsupported("temperature", "Anthropic takes a temperature from 0 to 1")
        temperature = None
    if temperature is not None and top_p is not None:
        if top_p == 1:
            top_p = None
        elif temperature == 1:
            temperature = None
        else:
            call.unsupported("top_p", "Anthropic takes temperature or top_p, not both")
            top_p = None
    return {k: v for k, v in (("temperature", temperature), ("top_p", top_p)) if v is not None}


def _tool_id(value: Any) -> str:
    """Anthropic tool ids allow ``[a-zA-Z0-9_-]``; ids from other providers are mapped the
    same way on the tool call and on its result, so they still match."""
    return _ID_CHARS.sub("_", str(value)) or "toolu_0"


# --- request -------------------------------------------------------------------------------


def to_anthropic(call: Call) -> dict[str, Any]:
    common.check_params(call, SUPPORTED)
    conv = call.conversation
    out: dict[str, Any] = {"model": call.route.upstream_model}
    system, messages = _messages(call, conv)
    if system:
        out["system"] = [{"type": "text", "text": text} for text in system]
    out["messages"] = messages

    limit = conv.max_tokens
    if conv.reasoning not in (None, "none"):
        assert conv.reasoning is not None
        budget = common.REASONING_BUDGETS[conv.reasoning]
        if limit is not None and limit <= 1024:
            raise invalid("with reasoning_effort, max_completion_tokens must be over 1024 on Anthropic.", "max_tokens")
        if limit is not None and limit <= budget:
            budget = max(1024, limit // 2)
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        out["max_tokens"] = limit or budget + DEFAULT_MAX_TOKENS
    else:
        out["max_tokens"] = limit or DEFAULT_MAX_TOKENS

    out.update(_sampling(call))
    if conv.stop:
        out["stop_sequences"] = conv.stop
    if conv.user is not None:
        out["metadata"] = {"user_id": conv.user}

    tools = conv.tools
    choice = conv.tool_choice
    if tools:
        out["tools"] = [_tool(t) for t in tools]
    fmt = conv.json_format
    schema = fmt.schema_ if fmt is not None else None
    native = anthropic_schema(schema) if schema is not None and "json_schema" in call.route.capabilities else None
    if native is not None:
        out["output_config"] = {"format": {"type": "json_schema", "schema": native}}
    elif fmt is not None:
        if tools:
            call.unsupported(
                "response_format", "Anthropic answers in JSON through a tool, which cannot be combined with tools"
            )
        elif "thinking" in out:
            call.unsupported("response_format", "Anthropic cannot force its JSON tool while thinking")
        else:
            root = schema if schema is not None else {"type": "object"}
            if root.get("type") != "object":
                raise invalid(
                    "Anthropic answers in JSON through a tool whose input is an object: "
                    "json_schema.schema must have type 'object'.",
                    "response_format.json_schema.schema",
                )
            out["tools"] = [
                {
                    "name": JSON_TOOL,
                    "description": "Answer with this tool; its input is the answer.",
                    "input_schema": root,
                }
            ]
            out["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
            return out
    forced = choice == "required" or isinstance(choice, NamedTool)
    if forced and tools and "thinking" in out:
        call.unsupported("tool_choice", "Anthropic cannot force a tool call while thinking")
        choice = None  # dropped on the client's request
    if choice is not None and tools:
        mapped: dict[str, Any]
        if isinstance(choice, NamedTool):
            mapped = {"type": "tool", "name": choice.name}
        else:
            mapped = {"type": {"auto": "auto", "none": "none", "required": "any"}[choice]}
        out["tool_choice"] = mapped
    if conv.parallel_tool_calls is False and tools:
        out.setdefault("tool_choice", {"type": "auto"})
        if out["tool_choice"]["type"] != "none":
            out["tool_choice"]["disable_parallel_tool_use"] = True
    return out


def _tool(tool: Tool) -> dict[str, Any]:
    schema = dict(tool.parameters)
    schema.setdefault("type", "object")
    out = {"name": tool.name, "input_schema": schema}
    if tool.description:
        out["description"] = tool.description
    return out


def _messages(call: Call, conv: Conversation) -> tuple[list[str], list[dict[str, Any]]]:
    turns = common.Turns("content")
    for i, message in enumerate(conv.messages):
        where = f"messages[{i}]"
        if turns.take(call, where, message, "Anthropic"):
            continue
        if isinstance(message, User):
            turns.add("user", _user_blocks(message, where))
        elif isinstance(message, Assistant):
            turns.add("assistant", _assistant_blocks(message))
        elif isinstance(message, ToolResult):
            result = {"type": "tool_result", "tool_use_id": _tool_id(message.tool_call_id), "content": message.text}
            turns.add("user", [result])
    return turns.system, turns.checked("Anthropic")


def _user_blocks(message: User, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        param = f"{where}.content[{j}]"
        if isinstance(part, Text):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):  # Anthropic chooses the resolution itself: detail has no use
            if part.declared is not None and part.declared not in IMAGE_TYPES:
                raise invalid(f"Anthropic takes images as {', '.join(IMAGE_TYPES)}, not {part.declared}.", param)
            if part.inline is not None:
                if part.inline.mime not in IMAGE_TYPES:
                    raise invalid(f"Anthropic takes images as {', '.join(IMAGE_TYPES)}, not {part.inline.mime}.", param)
                source = {"type": "base64", "media_type": part.inline.mime, "data": part.inline.data}
                blocks.append({"type": "image", "source": source})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": part.url}})
        elif isinstance(part, File):
            media = part.inline
            if media.mime == "application/pdf":
                block: dict[str, Any] = {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": media.data},
                }
            elif media.mime == "text/plain":
                text = base64.b64decode(media.data).decode("utf-8", errors="replace")
                block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
            else:
                raise invalid(f"Anthropic takes PDF and plain-text files, not {media.mime}.", param)
            if part.filename:
                block["title"] = part.filename
            blocks.append(block)
        else:
            raise invalid("content part type 'input_audio' is not supported by Anthropic.", param)
    return blocks


def _assistant_blocks(message: Assistant) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.thinking:
        if block.kind == "thinking":
            blocks.append({"type": "thinking", "thinking": block.text, "signature": block.signature})
        else:
            blocks.append({"type": "redacted_thinking", "data": block.data})
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    for tc in message.tool_calls:
        blocks.append({"type": "tool_use", "id": _tool_id(tc.id), "name": tc.name, "input": tc.arguments})
    return blocks


# --- reply ---------------------------------------------------------------------------------


def usage_of(usage: Mapping[str, Any]) -> Usage:
    """Anthropic counts fresh, cache-read and cache-written input apart; OpenAI's prompt
    tokens are all of them, with the cached part in the details. ``output_tokens`` includes
    thinking; ``output_tokens_details.thinking_tokens`` says how much of it was thinking."""
    fresh = common.count(usage.get("input_tokens"))
    read = common.count(usage.get("cache_read_input_tokens"))
    write = common.count(usage.get("cache_creation_input_tokens"))
    details = usage.get("output_tokens_details")
    ttl = usage.get("cache_creation")  # the writes by TTL: ephemeral_5m/1h_input_tokens
    return Usage(
        prompt_tokens=fresh + read + write,
        completion_tokens=common.count(usage.get("output_tokens")),
        reasoning_tokens=common.count(details.get("thinking_tokens")) if isinstance(details, Mapping) else 0,
        cached_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(common.count(ttl.get("ephemeral_1h_input_tokens")), write)
        if isinstance(ttl, Mapping)
        else 0,
    )


def to_openai(reply: dict[str, Any], model: str, json_mode: bool) -> tuple[bytes, Usage]:
    usage = usage_of(reply.get("usage") or {})
    return openai_chat.completion(answer_of(reply, json_mode), model, usage), usage


def answer_of(reply: dict[str, Any], json_mode: bool) -> Answer:
    """A message (checked by anthropic_replies.REPLY) read: text, thinking with its signature,
    tool calls; in JSON mode the forced tool's input is the text."""
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[Thinking] = []
    calls: list[ToolCall] = []
    for block in reply["content"]:
        kind = block["type"]
        if kind == "text":
            text.append(block["text"])
        elif kind == "thinking":
            thought = block.get("thinking") or ""
            reasoning.append(thought)
            thinking.append(Thinking(kind="thinking", text=thought, signature=block.get("signature") or ""))
        elif kind == "redacted_thinking":
            thinking.append(Thinking(kind="redacted_thinking", data=block["data"]))
        elif kind == "tool_use":
            if json_mode and block["name"] == JSON_TOOL:
                text.append(json.dumps(block["input"]))
                continue
            calls.append(ToolCall(id=block["id"], name=block["name"], arguments=block["input"]))
    finish = FINISH.get(str(reply.get("stop_reason")), "stop")
    if json_mode and finish == "tool_calls" and not calls:
        finish = "stop"
    turn = Assistant(text="".join(text), tool_calls=calls, thinking=thinking, reasoning="".join(reasoning))
    return Answer(id="chatcmpl-" + str(reply.get("id") or "anthropic"), choices=[Choice(message=turn, finish=finish)])


def error_from(status: int, raw: bytes, provider: str, headers: Mapping[str, str]) -> GatewayError:
    message, err_type = "", ""
    try:
        body = json.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            err_type = str(err.get("type") or "")
    except ValueError:
        pass
    return common.provider_error(status, message, provider, headers, code=_ERROR_CODES.get(err_type))


# --- stream --------------------------------------------------------------------------------


class AnthropicStream:
    """Anthropic stream events in, OpenAI chunks out.

    ``message_start`` gives the role chunk and the input usage; each content block maps by
    its type: text to ``content``, thinking to ``reasoning_content`` (and, when the block
    closes, a ``thinking_blocks`` delta with its signature), tool_use to a tool call whose
    ``index`` counts tool calls, not content blocks; ``message_delta`` gives the finish
    reason and output usage; ``message_stop`` ends the stream.
    """

    schema: TypeAdapter[Any] | None = anthropic_replies.EVENT  # each event is checked before feed()

    def __init__(self, model: str, meter: StreamMeter, wants_usage: bool, json_mode: bool) -> None:
        self.out = ChunkWriter("chatcmpl-anthropic", model)
        self.meter = meter
        self.wants_usage = wants_usage
        self.json_mode = json_mode
        self.finished = False
        self.usage: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}  # content block index -> its state
        self.tool_count = 0
        self.finish_reason: str | None = None

    def feed(self, event: dict[str, Any], data: bytes = b"") -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            if message.get("id"):
                self.out.id = "chatcmpl-" + str(message["id"])
            self.usage.update(message.get("usage") or {})
            self.meter.prompt_tokens = usage_of(self.usage).prompt_tokens
            return [self.out.delta(0, {"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._start(int(event.get("index", 0)), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(int(event.get("index", 0)), event.get("delta") or {})
        if kind == "content_block_stop":
            return self._stop(int(event.get("index", 0)))
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                finish = FINISH.get(str(reason), "stop")
                if self.json_mode and finish == "tool_calls" and self.tool_count == 0:
                    finish = "stop"
                self.finish_reason = finish
                return [self.out.delta(0, {}, finish)]
            return []
        if kind == "message_stop":
            self.finished = True
            self.meter.usage = usage_of(self.usage)
            return []
        if kind == "error":
            err = event.get("error") or {}
            err_type = str(err.get("type") or "api_error")
            status = 503 if err_type == "overloaded_error" else 502
            raise common.provider_error(
                status, str(err.get("message") or "provider error"), "anthropic", {}, code=err_type
            )
        return []  # ping and event types added later

    def _start(self, index: int, block: dict[str, Any]) -> list[bytes]:
        kind = block.get("type")
        state: dict[str, Any] = {"type": kind, "thinking": [], "signature": ""}
        self.blocks[index] = state
        if kind == "tool_use":
            if self.json_mode and block.get("name") == JSON_TOOL:
                state["type"] = "json"
                return []
            state["tool_index"] = self.tool_count
            self.tool_count += 1
            name = str(block.get("name") or "")
            self.meter.saw_content(len(name))
            call = {
                "index": state["tool_index"],
                "id": str(block.get("id") or ""),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            return [self.out.delta(0, {"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            self.meter.saw_content(len(block["text"]))
            return [self.out.delta(0, {"content": block["text"]})]
        if kind == "redacted_thinking":
            state["data"] = block.get("data") or ""
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        state = self.blocks.get(index, {"type": None})
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text") or "")
            self.meter.saw_content(len(text))
            return [self.out.delta(0, {"content": text})] if text else []
        if kind == "thinking_delta":
            text = str(delta.get("thinking") or "")
            state.setdefault("thinking", []).append(text)
            self.meter.saw_content(len(text))
            return [self.out.delta(0, {"reasoning_content": text})] if text else []
        if kind == "signature_delta":
            state["signature"] = state.get("signature", "") + str(delta.get("signature") or "")
            return []
        if kind == "input_json_delta":
            partial = str(delta.get("partial_json") or "")
            if not partial:
                return []
            self.meter.saw_content(len(partial))
            if state.get("type") == "json":
                return [self.out.delta(0, {"content": partial})]
            call = {"index": state.get("tool_index", 0), "function": {"arguments": partial}}
            return [self.out.delta(0, {"tool_calls": [call]})]
        return []

    def _stop(self, index: int) -> list[bytes]:
        state = self.blocks.get(index)
        if state is None:
            return []
        if state["type"] == "thinking":
            block = {"type": "thinking", "thinking": "".join(state["thinking"]), "signature": state["signature"]}
            return [self.out.delta(0, {"thinking_blocks": [block]})]
        if state["type"] == "redacted_thinking":
            return [self.out.delta(0, {"thinking_blocks": [{"type": "redacted_thinking", "data": state["data"]}]})]
        return []

    def eof(self) -> None:
        pass  # Anthropic streams end with message_stop; without it the stream was cut

    def close(self) -> list[bytes]:
        return self.out.end(usage_of(self.usage) if self.wants_usage else None)


# --- adapter -------------------------------------------------------------------------------


def _version(call: Call) -> str:
    return call.provider.api_version or API_VERSION


def _headers(call: Call) -> dict[str, str]:
    return common.json_headers(call, **{"anthropic-version": _version(call)})


def _url(call: Call) -> str:
    return call.provider.base_url.rstrip("/") + "/v1/messages"


def _json_mode(call: Call, body: dict[str, Any]) -> bool:
    """Whether ``body`` asks for the answer through the forced JSON tool (not dropped, not
    native structured outputs, not a client's own tool): then its input is the content."""
    choice = body.get("tool_choice")
    return not call.body.get("tools") and isinstance(choice, dict) and choice.get("name") == JSON_TOOL


class AnthropicAdapter:
    async def chat(self, call: Call) -> Completion:
        body = to_anthropic(call)
        provider = call.route.provider
        raw, upstream_ms = await post_json(
            call, _url(call), body, _headers(call), lambda s, r, h: error_from(s, r, provider, h)
        )
        reply = common.parse_json_reply(raw, provider)
        json_mode = _json_mode(call, body)
        out, usage = read_reply(
            provider, anthropic_replies.REPLY, reply, lambda: to_openai(reply, call.route.model, json_mode)
        )
        return Completion(body=out, usage=usage, upstream_ms=upstream_ms)

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        body = to_anthropic(call)
        body["stream"] = True
        provider = call.route.provider
        resp = await open_stream(call, _url(call), body, _headers(call), lambda s, r, h: error_from(s, r, provider, h))
        translator = AnthropicStream(call.route.model, meter, call.wants_usage_chunk, _json_mode(call, body))
        return relay(call, resp, translator, meter)
