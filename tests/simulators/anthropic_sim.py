"""An Anthropic Messages API simulator (``POST /v1/messages``), as Anthropic documents it.

Requests are checked the way the API checks them (``x-api-key``, ``anthropic-version``,
``max_tokens``, roles, block types, base64, tool_use / tool_result pairing, thinking budget
and thinking signatures on a tool-use continuation) and answered by the scripted model of
:mod:`tests.simulators.script`. Errors use Anthropic's shape
``{"type": "error", "error": {"type", "message"}}`` and statuses (429 with ``retry-after``,
529 ``overloaded_error``). Streams send ``message_start``, ``content_block_start`` /
``_delta`` / ``_stop`` per block, ``ping``, ``message_delta`` and ``message_stop``, and
``event: error`` for a failure mid-stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import uuid
from typing import Any

from aiohttp import web

from tests.simulators import script
from tests.simulators.server import LongStream, ProviderState, Recorded, ThreadedServer

CACHE_READ = 4
CACHE_WRITE = 2
CACHE_WRITE_1H = 1  # of CACHE_WRITE, written with the 1-hour TTL (usage.cache_creation says which)
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


# Request fields of the Messages API (anthropic 2.x's MessageCreateParams, and the sampling
# options the API still takes though the SDK no longer names them); anything else is a 400.
FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "thinking", "tools",
    "tool_choice", "output_config", "service_tier", "container", "cache_control", "inference_geo", "speed",
    "diagnostics", "temperature", "top_p", "top_k",
}  # fmt: skip
# The API versions served; 2026-10-21 removed the sampling options from the Messages API.
VERSIONS = {"2023-06-01", "2026-10-21"}
SAMPLING = {"temperature", "top_p", "top_k"}
# What each node of an ``output_config.format`` schema may carry (structured outputs' subset).
SCHEMA_KEYS = {
    "type", "description", "title", "enum", "const", "anyOf", "allOf", "$ref", "$defs", "definitions",
    "properties", "required", "additionalProperties", "items", "minItems", "format",
}  # fmt: skip


def check_output_schema(node: Any, where: str) -> None:
    """Structured outputs' JSON Schema subset: every object closed, no bounds or patterns."""
    if not isinstance(node, dict):
        raise Invalid(f"{where}: schema must be an object")
    for key in node:
        if key not in SCHEMA_KEYS:
            raise Invalid(f"{where}: property '{key}' is not supported in output_config.format schemas")
    if node.get("type") == "object" and node.get("additionalProperties") is not False:
        raise Invalid(f"{where}: for 'object' type, 'additionalProperties' must be explicitly set to false")
    if isinstance(node.get("type"), list):
        raise Invalid(f"{where}.type: must be a single type; use anyOf for unions")
    if node.get("minItems") not in (None, 0, 1):
        raise Invalid(f"{where}.minItems: only 0 and 1 are supported")
    children = [*(node.get("properties") or {}).items(), *(node.get("$defs") or {}).items()]
    children += [(str(k), sub) for k, sub in enumerate(node.get("anyOf") or node.get("allOf") or [])]
    if "items" in node:
        children.append(("items", node["items"]))
    for name, sub in children:
        check_output_schema(sub, f"{where}.{name}")


class Invalid(Exception):
    pass


def error(status: int, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}
    headers = {"request-id": "req_" + uuid.uuid4().hex[:24]}
    if status == 429:
        headers["retry-after"] = "7"
    return web.json_response(body, status=status, headers=headers)


def _b64(data: Any, where: str) -> int:
    try:
        return len(base64.b64decode(str(data), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise Invalid(f"{where}: invalid base64 data") from exc


def read_prompt(body: dict[str, Any], version: str = "2023-06-01") -> script.Prompt:
    """Check a Messages request as the API does, under API ``version``, and read it into a
    scripted prompt."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise Invalid(f"{name}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise Invalid("max_tokens: must be a positive integer")
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, int | float)):
        raise Invalid("temperature: Input should be a valid number")
    if temperature is not None and not 0 <= temperature <= 1:
        raise Invalid("temperature: range: 0..1")
    if temperature is not None and body.get("top_p") is not None:
        raise Invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    removed = SAMPLING if version >= "2026-10-21" else set()
    for key in body:
        if key not in FIELDS or key in removed:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    prompt = script.Prompt(model=str(body["model"]))
    output = body.get("output_config")
    if output is not None:
        if not isinstance(output, dict) or set(output) - {"effort", "format"}:
            raise Invalid("output_config: Extra inputs are not permitted")
        fmt = output.get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or set(fmt) != {"type", "schema"}:
                raise Invalid("output_config.format: expected {type: 'json_schema', schema: {...}}")
            check_output_schema(fmt["schema"], "output_config.format.schema")
            prompt.json_schema = fmt["schema"]
    system = body.get("system")
    if isinstance(system, list):
        if not all(isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in system):
            raise Invalid("system: Input should be a valid list of text blocks")
        prompt.system = " ".join(b["text"] for b in system)
    elif system is not None and not isinstance(system, str):
        raise Invalid("system: Input should be a valid string or a list of text blocks")
    elif isinstance(system, str):
        prompt.system = system
    prompt.prompt_chars += len(prompt.system)
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= body["max_tokens"]:
            raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
        prompt.thinking = True
    tools = body.get("tools") or []
    prompt.tools = [{"name": t["name"], "schema": t.get("input_schema")} for t in tools]
    for t in tools:
        if not isinstance(t.get("input_schema"), dict) or t["input_schema"].get("type") != "object":
            raise Invalid(f"tools: input_schema of {t.get('name')!r} must have type object")
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if prompt.thinking and kind in ("any", "tool"):
            raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
        prompt.tool_choice = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind), "auto")
        if kind == "tool":
            prompt.tool_choice = ("function", str(choice.get("name")))
    prompt.stop = list(body.get("stop_sequences") or [])
    prompt.max_tokens = body["max_tokens"]

    names: dict[str, str] = {}
    pending: set[str] = set()  # tool_use ids of the previous assistant turn awaiting results
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise Invalid('messages: first message must use the "user" role')
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise Invalid(f"messages.{i}.content: Input should be a valid list")
        results: set[str] = set()
        texts: list[str] = []
        last_results: list[tuple[str, str]] = []
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type")
            if kind == "text":
                if not block.get("text"):
                    raise Invalid(f"{where}: text content blocks must be non-empty")
                texts.append(block["text"])
                prompt.prompt_chars += len(block["text"])
            elif kind == "image" and role == "user":
                source = block.get("source") or {}
                if source.get("type") == "base64":
                    if source.get("media_type") not in IMAGE_TYPES:
                        raise Invalid(f"{where}.source.media_type: Input should be one of {sorted(IMAGE_TYPES)}")
                    size = _b64(source.get("data"), where)
                    prompt.media.append(script.Media("image", source["media_type"], size))
                elif source.get("type") == "url":
                    prompt.media.append(script.Media("image", "url", 0, url=str(source.get("url"))))
                else:
                    raise Invalid(f"{where}.source: unknown source type")
            elif kind == "document" and role == "user":
                source = block.get("source") or {}
                if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
                    prompt.media.append(script.Media("document", "application/pdf", _b64(source.get("data"), where)))
                elif source.get("type") == "text":
                    prompt.media.append(script.Media("document", "text/plain", len(str(source.get("data")))))
                else:
                    raise Invalid(f"{where}.source: unsupported document source")
            elif kind == "tool_result" and role == "user":
                tool_id = block.get("tool_use_id")
                if tool_id not in pending:
                    raise Invalid(
                        f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_id}. Each "
                        "`tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
                results.add(tool_id)
                result = block.get("content")
                text = result if isinstance(result, str) else " ".join(b.get("text", "") for b in result or [])
                last_results.append((names.get(tool_id, tool_id), text))
            elif kind == "tool_use" and role == "assistant":
                if not re.fullmatch(r"[a-zA-Z0-9_-]+", str(block.get("id"))):
                    raise Invalid(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
                names[block["id"]] = block.get("name")
                if not isinstance(block.get("input"), dict):
                    raise Invalid(f"{where}.input: Input should be a valid dictionary")
            elif kind == "thinking" and role == "assistant":
                if not script.signature_ok(block.get("thinking", ""), block.get("signature")):
                    raise Invalid(f"{where}: Invalid `signature` in `thinking` block")
            elif kind == "redacted_thinking" and role == "assistant":
                pass
            else:
                raise Invalid(f"{where}.type: block type {kind!r} is not allowed in a {role} message")
        if role == "user":
            if pending - results:
                raise Invalid(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    + ", ".join(sorted(pending - results))
                )
            pending = set()
            if texts:
                prompt.user_texts.append(" ".join(texts))
            prompt.tool_results = last_results
        else:
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
            last_assistant = i == max(k for k, m in enumerate(messages) if m.get("role") == "assistant")
            if (
                prompt.thinking
                and pending
                and last_assistant
                and blocks[0].get("type") not in ("thinking", "redacted_thinking")
            ):
                raise Invalid(
                    f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                    "start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
                )
    if messages[-1]["role"] == "user":
        if pending:
            raise Invalid("tool_use ids were found without tool_result blocks immediately after")
    return prompt


def _key(request: web.Request) -> str:
    # The API takes the key in x-api-key; newer SDKs may send it as a bearer token.
    return request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")


def _refused(request: web.Request) -> web.Response | None:
    """The API's answer to a request without a valid key or an ``anthropic-version``."""
    key = _key(request)
    if not key or key.startswith("sk-invalid"):
        return error(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    return None


class AnthropicSimulator(ThreadedServer):
    name = "anthropic-sim"

    def __init__(self) -> None:
        super().__init__()
        self.state = ProviderState()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)

    async def count_tokens(self, request: web.Request) -> web.Response:
        """``{"input_tokens": N}``: what the same prompt is billed as input (the API's count)."""
        refused = _refused(request)
        if refused is not None:
            return refused
        version = request.headers["anthropic-version"]
        try:
            body = await request.json()
        except ValueError:
            return error(400, "There was an error parsing the body of your request")
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        try:
            prompt = read_prompt({**body, "max_tokens": 1}, version)
        except Invalid as exc:
            return error(400, str(exc))
        except (TypeError, AttributeError, KeyError) as exc:  # a shape the API's schema refuses
            return error(400, f"Input should be a valid request: {type(exc).__name__}")
        return web.json_response({"input_tokens": script.answer(prompt).prompt_tokens})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        refused = _refused(request)
        if refused is not None:
            return refused
        key = _key(request)
        version = request.headers["anthropic-version"]
        if version not in VERSIONS:
            return error(400, f"anthropic-version: {version!r} is not a valid version")
        if key.startswith("sk-ratelimited"):
            return error(429, "Number of request tokens has exceeded your per-minute rate limit")
        try:
            body = await request.json()
        except ValueError:
            return error(400, "There was an error parsing the body of your request")
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        model = str(body.get("model", ""))
        status = re.search(r"-status-(\d{3})$", model)
        if status:
            return error(int(status.group(1)), f"simulated {status.group(1)}")
        if model.endswith("-slow"):
            await asyncio.sleep(self.state.slow_seconds)
        try:
            prompt = read_prompt(body, version)
        except Invalid as exc:
            return error(400, str(exc))
        except (TypeError, AttributeError, KeyError) as exc:  # a shape the API's schema refuses
            return error(400, f"Input should be a valid request: {type(exc).__name__}")
        reply = script.answer(prompt, id_prefix="toolu")
        cand = reply.candidates[0]
        if model.endswith("-filtered"):
            cand.finish = "refusal"
        if body.get("stream"):
            return await self._stream(request, model, reply)
        return web.json_response(message_json(model, reply), headers={"request-id": "req_" + uuid.uuid4().hex[:24]})

    async def _stream(self, request: web.Request, model: str, reply: script.Answer) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        cand = reply.candidates[0]

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        start = message_json(model, reply)
        start.update(content=[], stop_reason=None, stop_sequence=None)
        start["usage"] = dict(start["usage"], output_tokens=1)
        await send("message_start", {"type": "message_start", "message": start})
        if model.endswith("-long"):
            log = LongStream()
            self.state.long_streams.append(log)
            block = {"type": "text", "text": ""}
            await send("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})

            async def word(i: int) -> None:
                delta = {"type": "text_delta", "text": f"{i:03d} "}
                await send("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})

            await log.run(word)
            return resp
        index = 0
        if cand.thinking:
            await send(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
            )
            for piece in script.words(cand.thinking):
                await send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": piece},
                    },
                )
            sig = script.sign(cand.thinking)
            await send(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": sig}},
            )
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        if cand.text or not cand.tool_calls:
            await send(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            )
            await send("ping", {"type": "ping"})
            for k, piece in enumerate(script.words(cand.text)):
                await send(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}},
                )
                if k == 1 and model.endswith("-midstream-error"):
                    await send(
                        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                    )
                    return resp
                if k == 1 and model.endswith("-truncate"):
                    return resp
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        for call in cand.tool_calls:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            await send("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            args = json.dumps(call.args)
            third = max(1, len(args) // 3)
            for piece in (args[:third], args[third : 2 * third], args[2 * third :]):
                if piece:
                    await send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        usage = {"output_tokens": cand.output_tokens + cand.thinking_tokens, **_output_details(cand)}
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(cand), "stop_sequence": None},
                "usage": usage,
            },
        )
        await send("message_stop", {"type": "message_stop"})
        return resp


def _stop_reason(cand: script.Candidate) -> str:
    return {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}.get(cand.finish, cand.finish)


def message_json(model: str, reply: script.Answer) -> dict[str, Any]:
    cand = reply.candidates[0]
    content: list[dict[str, Any]] = []
    if cand.thinking:
        content.append({"type": "thinking", "thinking": cand.thinking, "signature": script.sign(cand.thinking)})
    if cand.text or not cand.tool_calls:
        content.append({"type": "text", "text": cand.text})
    for call in cand.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.args})
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(cand),
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "cache_creation_input_tokens": CACHE_WRITE,
            "cache_read_input_tokens": CACHE_READ,
            "cache_creation": {
                "ephemeral_5m_input_tokens": CACHE_WRITE - CACHE_WRITE_1H,
                "ephemeral_1h_input_tokens": CACHE_WRITE_1H,
            },
            "output_tokens": cand.output_tokens + cand.thinking_tokens,
            **_output_details(cand),
        },
    }


def _output_details(cand: script.Candidate) -> dict[str, Any]:
    """How much of ``output_tokens`` was thinking: reported when the model thought."""
    return {"output_tokens_details": {"thinking_tokens": cand.thinking_tokens}} if cand.thinking_tokens else {}
