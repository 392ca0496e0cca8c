"""Cohere's Chat API v2 (``POST /v2/chat``) behind OpenAI's chat schema.

Request: Cohere's messages are close to OpenAI's (system, user with text and image parts,
assistant with tool calls, tool results); what differs is renamed (``top_p`` is ``p``,
``stop`` is ``stop_sequences``, ``tool_choice`` is ``REQUIRED`` or ``NONE``, a JSON schema is
``response_format: {type: json_object, json_schema}``, ``reasoning_effort`` a thinking token
budget) and what it cannot carry (a named ``tool_choice``, ``n``, ``user``...) is a 400 naming
it, or dropped on request.

Reply: text and ``thinking`` content, tool calls (with their ``tool_plan`` as reasoning), the
finish reason and usage (``tokens``; cached tokens when Cohere reports them). Streams are
server-sent events (``message-start``, ``content-*``, ``tool-plan-delta``, ``tool-call-*``,
``message-end``) and become OpenAI chunks.
"""

from __future__ import annotations

import json
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
    System,
    Text,
    ToolCall,
    ToolResult,
    User,
)
from services.edge.providers import cohere_replies, common
from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.providers.common import ChunkWriter, invalid
from services.edge.providers.wire import open_stream, post_json, read_reply, relay
from shared.errors import GatewayError

SUPPORTED = common.TRANSLATED_PARAMS | {"seed", "frequency_penalty", "presence_penalty"}
FINISH: dict[str, Finish] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "stop",
    "TIMEOUT": "length",
}


# --- request -------------------------------------------------------------------------------


def to_cohere(call: Call) -> dict[str, Any]:
    common.check_params(call, SUPPORTED)
    conv = call.conversation
    out: dict[str, Any] = {"model": call.route.upstream_model, "messages": _messages(call, conv)}
    if conv.max_tokens is not None:
        out["max_tokens"] = conv.max_tokens
    # Cohere takes p from 0.01 to 0.99: OpenAI's 1 (no cut) is its 0.99, 0 its 0.01.
    top_p = None if conv.top_p is None else min(max(conv.top_p, 0.01), 0.99)
    for key, value in (("temperature", conv.temperature), ("p", top_p), ("seed", conv.seed)):
        if value is not None:
            out[key] = value
    for name, penalty in (("frequency_penalty", conv.frequency_penalty), ("presence_penalty", conv.presence_penalty)):
        if penalty is None:
            continue
        if penalty < 0:
            call.unsupported(name, "Cohere takes penalties from 0 to 1")
        else:
            out[name] = penalty
    if conv.stop:
        out["stop_sequences"] = conv.stop
    # ``user``: Cohere has no such field; the gateway meters it as the request's user.
    if conv.tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": t.parameters,
                },
            }
            for t in conv.tools
        ]
        if conv.tool_choice == "required":
            out["tool_choice"] = "REQUIRED"
        elif conv.tool_choice == "none":
            out["tool_choice"] = "NONE"
        elif isinstance(conv.tool_choice, NamedTool):
            call.unsupported("tool_choice", "Cohere can require a tool call, not a named one")
        if conv.parallel_tool_calls is False:
            call.unsupported("parallel_tool_calls", "Cohere cannot turn parallel tool calls off")
    if conv.json_format is not None:
        if conv.tools:
            call.unsupported("response_format", "Cohere's JSON mode cannot be combined with tools")
        else:
            fmt: dict[str, Any] = {"type": "json_object"}
            if conv.json_format.schema_ is not None:
                fmt["json_schema"] = conv.json_format.schema_
            out["response_format"] = fmt
    if conv.reasoning == "none":
        out["thinking"] = {"type": "disabled"}
    elif conv.reasoning is not None:
        out["thinking"] = {"type": "enabled", "token_budget": common.REASONING_BUDGETS[conv.reasoning]}
    return out


def _messages(call: Call, conv: Conversation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(conv.messages):
        where = f"messages[{i}]"
        if message.name is not None and not isinstance(message, ToolResult):
            call.unsupported(f"{where}.name", "Cohere messages have no author name")
        if isinstance(message, System):
            out.append({"role": "system", "content": message.text})
        elif isinstance(message, User):
            out.append({"role": "user", "content": _user_content(message, where)})
        elif isinstance(message, Assistant):
            out.append(_assistant(message))
        else:
            out.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text})
    if not any(m["role"] != "system" for m in out):
        raise invalid("Cohere needs at least one user or assistant message besides system messages.", "messages")
    return out


def _user_content(message: User, where: str) -> str | list[dict[str, Any]]:
    if not message.parts:
        return ""
    if len(message.parts) == 1 and isinstance(message.parts[0], Text):
        return message.parts[0].text
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        param = f"{where}.content[{j}]"
        if isinstance(part, Text):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            if part.declared is not None and not part.declared.startswith("image/"):
                raise invalid(f"Cohere takes images only, not {part.declared}.", param)
            image: dict[str, Any] = {"url": part.url}
            if part.detail is not None:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        else:
            kind = "file" if isinstance(part, File) else "input_audio"
            raise invalid(f"content part type {kind!r} is not supported by Cohere.", param)
    return parts


def _assistant(message: Assistant) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": json.dumps(tc.arguments)}}
            for tc in message.tool_calls
        ]
        if message.reasoning:
            out["tool_plan"] = message.reasoning  # Cohere's reasoning before its calls, handed back
    if message.text:
        out["content"] = message.text
    return out


# --- reply ---------------------------------------------------------------------------------


def usage_of(usage: Mapping[str, Any] | None) -> Usage:
    """The model's own token counts (``tokens``; ``billed_units`` leaves out what Cohere does
    not bill), with cached prompt tokens when reported."""
    usage = usage or {}
    tokens = usage.get("tokens") or usage.get("billed_units") or {}
    return Usage(
        prompt_tokens=int(common.count_number(tokens.get("input_tokens"))),
        completion_tokens=int(common.count_number(tokens.get("output_tokens"))),
        cached_tokens=int(common.count_number(usage.get("cached_tokens"))),
    )


def to_openai(reply: dict[str, Any], model: str) -> tuple[bytes, Usage]:
    usage = usage_of(reply.get("usage"))
    return openai_chat.completion(answer_of(reply), model, usage), usage


def answer_of(reply: dict[str, Any]) -> Answer:
    """A chat reply (checked by cohere_replies.REPLY) read: text, thinking and the tool plan as
    reasoning, tool calls with their arguments as Cohere wrote them."""
    message = reply["message"]
    text: list[str] = []
    thinking: list[str] = []
    for item in message.get("content") or []:
        if item["type"] == "text":
            text.append(item["text"])
        elif item["type"] == "thinking":
            thinking.append(item["thinking"])
    if message.get("tool_plan"):
        thinking.append(message["tool_plan"])
    calls = [
        ToolCall(
            id=call["id"],
            name=call["function"]["name"],
            arguments={},
            raw_arguments=call["function"].get("arguments") or "{}",
        )
        for call in message.get("tool_calls") or []
    ]
    turn = Assistant(text="".join(text), tool_calls=calls, reasoning="".join(thinking))
    finish = FINISH.get(str(reply["finish_reason"]), "stop")
    return Answer(id="chatcmpl-" + str(reply["id"]), choices=[Choice(message=turn, finish=finish)])


def error_from(status: int, raw: bytes, provider: str, headers: Mapping[str, str]) -> GatewayError:
    message = ""
    try:
        body = json.loads(raw)
        if isinstance(body, dict):
            message = str(body.get("message") or "")
    except ValueError:
        pass
    return common.provider_error(status, message, provider, headers)


# --- stream --------------------------------------------------------------------------------


class CohereStream:
    """Cohere's stream events into OpenAI chunks: ``message-start`` gives the role chunk;
    content deltas map to ``content`` (text) or ``reasoning_content`` (thinking, and the tool
    plan); a tool call starts with its id and name and grows by its arguments;
    ``message-end`` gives the finish reason and the usage, and ends the stream."""

    schema: TypeAdapter[Any] | None = cohere_replies.EVENT  # each event is checked before feed()

    def __init__(self, model: str, meter: StreamMeter, wants_usage: bool) -> None:
        self.out = ChunkWriter("chatcmpl-cohere", model)
        self.meter = meter
        self.wants_usage = wants_usage
        self.finished = False
        self.usage: dict[str, Any] | None = None
        self.tools: dict[int, int] = {}  # Cohere's tool-call index -> OpenAI's

    def feed(self, event: dict[str, Any], data: bytes = b"") -> list[bytes]:
        kind = event["type"]
        if kind == "message-start":
            if event.get("id"):
                self.out.id = "chatcmpl-" + str(event["id"])
            return [self.out.delta(0, {"role": "assistant", "content": ""})]
        if kind == "content-delta":
            content = _message(event).get("content") or {}
            if content.get("text"):
                self.meter.saw_content(len(content["text"]))
                return [self.out.delta(0, {"content": content["text"]})]
            if content.get("thinking"):
                self.meter.saw_content(len(content["thinking"]))
                return [self.out.delta(0, {"reasoning_content": content["thinking"]})]
            return []
        if kind == "tool-plan-delta":
            plan = _message(event).get("tool_plan") or ""
            self.meter.saw_content(len(plan))
            return [self.out.delta(0, {"reasoning_content": plan})] if plan else []
        if kind == "tool-call-start":
            call = _message(event)["tool_calls"]
            index = self.tools.setdefault(int(event.get("index") or 0), len(self.tools))
            function = call.get("function") or {}
            name, arguments = str(function.get("name") or ""), str(function.get("arguments") or "")
            self.meter.saw_content(len(name) + len(arguments))
            first = {"index": index, "id": call["id"], "type": "function"}
            first["function"] = {"name": name, "arguments": arguments}
            return [self.out.delta(0, {"tool_calls": [first]})]
        if kind == "tool-call-delta":
            known = self.tools.get(int(event.get("index") or 0))
            arguments = str(((_message(event).get("tool_calls") or {}).get("function") or {}).get("arguments") or "")
            if known is None or not arguments:
                return []
            self.meter.saw_content(len(arguments))
            return [self.out.delta(0, {"tool_calls": [{"index": known, "function": {"arguments": arguments}}]})]
        if kind == "message-end":
            end = event.get("delta") or {}
            if end.get("error"):
                raise common.provider_error(502, str(end["error"]), "cohere", {})
            self.usage = end.get("usage")
            self.meter.usage = usage_of(self.usage)
            self.finished = True
            finish = FINISH.get(str(end.get("finish_reason")), "stop")
            if finish == "stop" and self.tools:
                finish = "tool_calls"
            return [self.out.delta(0, {}, finish)]
        return []  # content-start/-end, tool-call-end, citations, and event types added later

    def eof(self) -> None:
        pass  # a Cohere stream ends with message-end; without it the stream was cut

    def close(self) -> list[bytes]:
        return self.out.end(usage_of(self.usage) if self.wants_usage else None)


def _message(event: dict[str, Any]) -> dict[str, Any]:
    """``delta.message`` of an event checked by cohere_replies.EVENT (a dict, or absent)."""
    return (event.get("delta") or {}).get("message") or {}


# --- adapter -------------------------------------------------------------------------------


def _url(call: Call) -> str:
    return call.provider.base_url.rstrip("/") + "/v2/chat"


def _headers(call: Call) -> dict[str, str]:
    return common.json_headers(call)


class CohereAdapter:
    async def chat(self, call: Call) -> Completion:
        body = to_cohere(call)
        provider = call.route.provider
        raw, upstream_ms = await post_json(
            call, _url(call), body, _headers(call), lambda s, r, h: error_from(s, r, provider, h)
        )
        reply = common.parse_json_reply(raw, provider)
        out, usage = read_reply(provider, cohere_replies.REPLY, reply, lambda: to_openai(reply, call.route.model))
        return Completion(body=out, usage=usage, upstream_ms=upstream_ms)

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        body = to_cohere(call)
        body["stream"] = True
        provider = call.route.provider
        resp = await open_stream(call, _url(call), body, _headers(call), lambda s, r, h: error_from(s, r, provider, h))
        return relay(call, resp, CohereStream(call.route.model, meter, call.wants_usage_chunk), meter)
