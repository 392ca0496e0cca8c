"""A Cohere simulator: the Chat API v2 (``POST /v2/chat``, JSON or server-sent events) and the
model listing (``GET /v1/models``), as Cohere documents them.

Requests take the key as ``Authorization: Bearer``; a key starting ``sk-invalid`` is a 401.
Bodies are checked as Cohere checks them: only the fields the v2 API knows (an OpenAI name
such as ``top_p``, ``stop`` or ``n`` is a 400), messages with the roles and content types it
takes, tool results that answer a tool call of an earlier assistant turn, ``tool_choice``
``REQUIRED`` or ``NONE``, ``response_format`` ``json_object`` (with a ``json_schema``) and
``thinking``. They are answered by the scripted model of :mod:`tests.simulators.script`: text
(and thinking) content, tool calls with a ``tool_plan``, ``finish_reason`` and usage with
``billed_units``, ``tokens`` and ``cached_tokens`` as floats. Errors are ``{"id",
"message"}``; Cohere sends no ``retry-after``. ``*-status-NNN`` answers that status;
``*-midstream-error`` ends a stream with a ``message-end`` that carries an error,
``*-truncate`` stops mid-answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any

from aiohttp import web

from tests.simulators import script
from tests.simulators.server import ProviderState, Recorded, ThreadedServer

CACHED = 2.0
FIELDS = {
    "model",
    "messages",
    "stream",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
}
_FINISH = {"stop": "COMPLETE", "stop_sequence": "STOP_SEQUENCE", "length": "MAX_TOKENS", "tool_calls": "TOOL_CALL"}


class Invalid(Exception):
    pass


def error(status: int, message: str) -> web.Response:
    return web.json_response({"id": uuid.uuid4().hex, "message": message}, status=status)


def _text(content: Any, where: str) -> str:
    """A system, assistant or tool message's content: a string or text (or document) parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Invalid(f"invalid request: {where}.content must be a string or a list of content blocks")
    texts = []
    for k, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "document"):
            raise Invalid(f"invalid request: {where}.content[{k}] must be a text or document block")
        texts.append(str(part.get("text") or json.dumps((part.get("document") or {}).get("data"))))
    return " ".join(texts)


def _image(url: Any, where: str) -> script.Media:
    if not isinstance(url, str):
        raise Invalid(f"invalid request: {where}.image_url.url must be a string")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header.removeprefix("data:").removesuffix(";base64")
        try:
            size = len(base64.b64decode(data, validate=True))
        except binascii.Error as exc:
            raise Invalid(f"invalid request: {where} is not valid base64") from exc
        return script.Media("image", mime, size)
    if not url.startswith(("http://", "https://")):
        raise Invalid(f"invalid request: {where}.image_url.url must be a URL or a data URI")
    return script.Media("image", "image/*", 0, url)


def read_prompt(model: str, body: dict[str, Any]) -> script.Prompt:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise Invalid(f"invalid request: unknown field: parameter {unknown[0]} is not a valid field")
    prompt = script.Prompt(model=model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("invalid request: messages must be a non-empty list")
    calls: dict[str, str] = {}  # tool call id -> function name, of every assistant turn so far
    results: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        where, role = f"messages[{i}]", message.get("role")
        if role == "system":
            prompt.system = " ".join([prompt.system, _text(message.get("content"), where)]).strip()
        elif role == "user":
            results = []
            content = message.get("content")
            texts = [content] if isinstance(content, str) else []
            for k, part in enumerate(content if isinstance(content, list) else []):
                if part.get("type") == "text":
                    texts.append(str(part.get("text")))
                elif part.get("type") == "image_url":
                    prompt.media.append(_image((part.get("image_url") or {}).get("url"), f"{where}.content[{k}]"))
                else:
                    raise Invalid(f"invalid request: {where}.content[{k}].type must be text or image_url")
            if not isinstance(content, str | list):
                raise Invalid(f"invalid request: {where}.content must be a string or a list")
            prompt.user_texts.append(" ".join(texts))
            prompt.prompt_chars += sum(len(t) for t in texts)
        elif role == "assistant":
            results = []
            if message.get("content") is not None:
                _text(message["content"], where)
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                if not isinstance(call.get("id"), str) or not isinstance(function.get("arguments"), str):
                    raise Invalid(f"invalid request: {where}.tool_calls need an id and arguments as a string")
                json.loads(function["arguments"])
                calls[call["id"]] = str(function.get("name"))
            if message.get("tool_plan") is not None and not isinstance(message["tool_plan"], str):
                raise Invalid(f"invalid request: {where}.tool_plan must be a string")
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in calls:
                raise Invalid(f"invalid request: {where}.tool_call_id {call_id!r} answers no tool call")
            results.append((calls[call_id], _text(message.get("content"), where)))
        else:
            raise Invalid(f"invalid request: {where}.role must be one of system, user, assistant, tool")
    prompt.tool_results = results
    for k, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") or {}
        if tool.get("type") != "function" or not isinstance(function.get("name"), str):
            raise Invalid(f"invalid request: tools[{k}] must be a function with a name")
        prompt.tools.append({"name": function["name"], "schema": function.get("parameters")})
    choice = body.get("tool_choice")
    if choice is not None:
        if choice not in ("REQUIRED", "NONE"):
            raise Invalid("invalid request: tool_choice must be one of REQUIRED, NONE")
        prompt.tool_choice = "required" if choice == "REQUIRED" else "none"
    fmt = body.get("response_format")
    if fmt is not None:
        if fmt.get("type") not in ("text", "json_object"):
            raise Invalid("invalid request: response_format.type must be text or json_object")
        if fmt.get("type") == "json_object":
            if body.get("tools"):
                raise Invalid("invalid request: response_format cannot be used with tools")
            prompt.json_mode = True
            prompt.json_schema = fmt.get("json_schema")
    thinking = body.get("thinking")
    if thinking is not None:
        if thinking.get("type") not in ("enabled", "disabled"):
            raise Invalid("invalid request: thinking.type must be enabled or disabled")
        prompt.thinking = thinking["type"] == "enabled"
    p = body.get("p")
    if p is not None and not 0.01 <= p <= 0.99:
        raise Invalid("invalid request: p must be between 0.01 and 0.99")
    prompt.stop = list(body.get("stop_sequences") or [])
    prompt.max_tokens = body.get("max_tokens")
    return prompt


def _usage(reply: script.Answer) -> dict[str, Any]:
    cand = reply.candidates[0]
    out = float(cand.output_tokens + cand.thinking_tokens)  # thinking is output, counted and billed
    tokens = {"input_tokens": float(reply.prompt_tokens), "output_tokens": out}
    return {"billed_units": dict(tokens), "tokens": tokens, "cached_tokens": CACHED}


def _plan(cand: script.Candidate) -> str:
    return "I will call " + ", ".join(c.name for c in cand.tool_calls) + "."


def _call(call: script.ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": json.dumps(call.args)}}


class CohereSimulator(ThreadedServer):
    name = "cohere-sim"

    def __init__(self) -> None:
        super().__init__()
        self.state = ProviderState()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/chat", self.chat)
        app.router.add_get("/v1/models", self.models)

    def _denied(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ").startswith("sk-invalid"):
            return error(401, "invalid api token")
        return None

    async def models(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        return web.json_response({"models": [{"name": "command-a-03-2025", "endpoints": ["chat"]}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return error(400, "invalid request: the body is not valid JSON")
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        model = str(body.get("model", ""))
        status = re.search(r"-status-(\d{3})$", model)
        if status:
            return error(int(status.group(1)), f"simulated {status.group(1)}")
        try:
            reply = script.answer(read_prompt(model, body), id_prefix=model.split("-")[0])
        except (Invalid, ValueError, AttributeError, TypeError) as exc:
            return error(400, str(exc) if isinstance(exc, Invalid) else f"invalid request: {exc}")
        if body.get("stream"):
            return await self._stream(request, model, reply)
        cand = reply.candidates[0]
        message: dict[str, Any] = {"role": "assistant"}
        content = []
        if cand.thinking:
            content.append({"type": "thinking", "thinking": cand.thinking})
        if cand.tool_calls:
            message["tool_plan"] = _plan(cand)
            message["tool_calls"] = [_call(c) for c in cand.tool_calls]
        else:
            content.append({"type": "text", "text": cand.text})
        message["content"] = content
        finish = _FINISH.get(cand.finish, "ERROR")
        return web.json_response(
            {"id": uuid.uuid4().hex, "message": message, "finish_reason": finish, "usage": _usage(reply)}
        )

    async def _stream(self, request: web.Request, model: str, reply: script.Answer) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        cand = reply.candidates[0]

        async def send(kind: str, **fields: Any) -> None:
            event = {"type": kind, **fields}
            await resp.write(f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode())

        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        await send("message-start", id=uuid.uuid4().hex, delta={"message": start})
        index = 0
        if cand.thinking:
            opening = {"type": "thinking", "thinking": ""}
            await send("content-start", index=index, delta={"message": {"content": opening}})
            for piece in script.words(cand.thinking):
                await send("content-delta", index=index, delta={"message": {"content": {"thinking": piece}}})
            await send("content-end", index=index)
            index += 1
        if cand.tool_calls:
            for piece in script.words(_plan(cand)):
                await send("tool-plan-delta", delta={"message": {"tool_plan": piece}})
            for k, call in enumerate(cand.tool_calls):
                first = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
                await send("tool-call-start", index=k, delta={"message": {"tool_calls": first}})
                args = json.dumps(call.args)
                half = len(args) // 2
                for piece in (args[:half], args[half:]):
                    more = {"tool_calls": {"function": {"arguments": piece}}}
                    await send("tool-call-delta", index=k, delta={"message": more})
                await send("tool-call-end", index=k)
        else:
            await send("content-start", index=index, delta={"message": {"content": {"type": "text", "text": ""}}})
            for n, piece in enumerate(script.words(cand.text)):
                await send("content-delta", index=index, delta={"message": {"content": {"text": piece}}})
                if n == 1 and model.endswith("-truncate"):
                    return resp  # the connection ends mid-answer: no message-end
                if n == 1 and model.endswith("-midstream-error"):
                    await send("message-end", delta={"error": "simulated model error", "finish_reason": "ERROR"})
                    return resp
            await send("content-end", index=index)
        finish = _FINISH.get(cand.finish, "ERROR")
        await send("message-end", delta={"finish_reason": finish, "usage": _usage(reply)})
        return resp
