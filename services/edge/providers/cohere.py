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

from services.edge.providers import cohere_replies, common
from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.providers.common import ChunkWriter, invalid
from services.edge.providers.wire import open_stream, post_json, read_reply, relay
from shared.errors import GatewayError

SUPPORTED = common.TRANSLATED_PARAMS | {"seed", "frequency_penalty", "presence_penalty"}
FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "stop",
    "TIMEOUT": "length",
}


# --- request -------------------------------------------------------------------------------


def to_cohere(call: Call) -> dict[str, Any]:
    body = call.body
    common.check_params(call, SUPPORTED)
    out: dict[str, Any] = {"model": call.route.upstream_model, "messages": _messages(call)}
    limit = common.max_tokens(body)
    if limit is not None:
        out["max_tokens"] = limit
    for name, key in (("temperature", "temperature"), ("top_p", "p"), ("seed", "seed")):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid(f"{name} must be a number.", name)
            out[key] = value
    for name in ("frequency_penalty", "presence_penalty"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid(f"{name} must be a number.", name)
            if value < 0:
                call.unsupported(name, "Cohere takes penalties from 0 to 1")
            else:
                out[name] = value
    stops = common.stop_sequences(body)
    if stops:
        out["stop_sequences"] = stops
    if isinstance(body.get("user"), str):
        pass  # Cohere has no such field: the gateway meters it as the request's user
    tools = common.tools_of(body)
    choice = common.tool_choice_of(body, [t["name"] for t in tools])
    if tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    **({"description": t["description"]} if t["description"] else {}),
                    "parameters": t["parameters"],
                },
            }
            for t in tools
        ]
        if choice == "required":
            out["tool_choice"] = "REQUIRED"
        elif choice == "none":
            out["tool_choice"] = "NONE"
        elif isinstance(choice, tuple):
            call.unsupported("tool_choice", "Cohere can require a tool call, not a named one")
    if body.get("parallel_tool_calls") is False and tools:
        call.unsupported("parallel_tool_calls", "Cohere cannot turn parallel tool calls off")
    kind, schema, _ = common.response_format_of(body)
    if kind in ("json_object", "json_schema"):
        if tools:
            call.unsupported("response_format", "Cohere's JSON mode cannot be combined with tools")
        else:
            fmt: dict[str, Any] = {"type": "json_object"}
            if kind == "json_schema" and schema is not None:
                fmt["json_schema"] = schema
            out["response_format"] = fmt
    effort = common.reasoning_effort(body)
    if effort == "none":
        out["thinking"] = {"type": "disabled"}
    elif effort is not None:
        out["thinking"] = {"type": "enabled", "token_budget": common.REASONING_BUDGETS[effort]}
    return out


def _messages(call: Call) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(call.body["messages"]):
        where, role = f"messages[{i}]", str(message["role"])
        if message.get("name") is not None and role in ("user", "assistant", "system", "developer"):
            call.unsupported(f"{where}.name", "Cohere messages have no author name")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": common.text_of(message.get("content"), where)})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(message.get("content"), where)})
        elif role == "assistant":
            out.append(_assistant(message, where))
        elif role == "tool":
            if not isinstance(message.get("tool_call_id"), str):
                raise invalid(f"{where}.tool_call_id is required for a tool message.", f"{where}.tool_call_id")
            text = common.text_of(message.get("content"), where)
            out.append({"role": "tool", "tool_call_id": message["tool_call_id"], "content": text})
        else:
            raise invalid(f"{where}.role {role!r} is not one of system, developer, user, assistant, tool.", where)
    if not any(m["role"] != "system" for m in out):
        raise invalid("Cohere needs at least one user or assistant message besides system messages.", "messages")
    return out


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(common.content_parts(content, where)):
        param = f"{where}.content[{j}]"
        kind = part["type"]
        if kind == "text":
            parts.append({"type": "text", "text": common.part_text(part, param)})
        elif kind == "image_url":
            url, detail = common.image_url_of(part, param)
            declared = common.declared_mime(part, param)
            if declared is not None and not declared.startswith("image/"):
                raise invalid(f"Cohere takes images only, not {declared}.", param)
            if url.startswith("data:"):
                common.data_uri(url, param)  # checked: broken base64 is the client's 400
            elif not url.startswith(("http://", "https://")):
                raise invalid("image_url.url must be an http(s) URL or a data URI.", param, "invalid_image_url")
            image: dict[str, Any] = {"url": url}
            if detail is not None:
                image["detail"] = detail
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise invalid(f"content part type {kind!r} is not supported by Cohere.", param)
    return parts


def _assistant(message: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    text = common.assistant_text(message, where)
    calls = message.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise invalid(f"{where}.tool_calls must be an array.", f"{where}.tool_calls")
        mapped = []
        for k, tc in enumerate(calls):
            param = f"{where}.tool_calls[{k}]"
            if not isinstance(tc, dict) or not isinstance(tc.get("id"), str):
                raise invalid("a tool call needs an id.", param)
            args = common.tool_arguments(tc, param)
            function = {"name": tc["function"]["name"], "arguments": json.dumps(args)}
            mapped.append({"id": tc["id"], "type": "function", "function": function})
        if mapped:
            out["tool_calls"] = mapped
            plan = message.get("reasoning_content")
            if isinstance(plan, str) and plan:
                out["tool_plan"] = plan  # Cohere's reasoning before its calls, handed back
    if text:
        out["content"] = text
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
    tool_calls = [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": call["function"].get("arguments") or "{}"},
        }
        for call in message.get("tool_calls") or []
    ]
    out: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    out["refusal"] = None
    if thinking:
        out["reasoning_content"] = "".join(thinking)
    if tool_calls:
        out["tool_calls"] = tool_calls
    finish = FINISH.get(str(reply["finish_reason"]), "stop")
    usage = usage_of(reply.get("usage"))
    choice = {"index": 0, "message": out, "logprobs": None, "finish_reason": finish}
    return common.completion_json("chatcmpl-" + str(reply["id"]), model, [choice], common.usage_json(usage)), usage


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
