"""OpenAI's Responses API, simulated (``/v1/responses``): what the gateway passes through to
OpenAI for OpenAI's models.

The scripted model (tests/simulators/script.py) answers; this module speaks the wire format:
the response object, its output items (reasoning, message, function calls), the typed stream
events with their sequence numbers, ``store`` and ``previous_response_id`` kept here as OpenAI
keeps them, ``GET``/``DELETE`` and input items. ``*-status-NNN`` answers that status;
``*-midstream-error`` ends a stream with ``response.failed`` after a few deltas.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.simulators import script

CACHED_TOKENS = 3


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    kind = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error"}.get(
        status, "server_error"
    )
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return web.json_response(body, status=status)


@dataclass
class Stored:
    response: dict[str, Any]
    context: list[dict[str, Any]]  # every item of the conversation, through this response's output
    input: list[dict[str, Any]] = field(default_factory=list)


def _items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for item in value or []:
        item = dict(item)
        item.setdefault("type", "message")
        if item["type"] == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        item.setdefault("id", _id({"message": "msg", "function_call": "fc"}.get(item["type"], "item")))
        items.append(item)
    return items


def _prompt(body: dict[str, Any], items: list[dict[str, Any]]) -> script.Prompt:
    prompt = script.Prompt(model=str(body.get("model")), system=str(body.get("instructions") or ""))
    names: dict[str, str] = {}
    for item in items:
        kind = item.get("type")
        if kind == "message":
            texts = [p.get("text", "") for p in item.get("content") or [] if p.get("type") in ("input_text",)]
            if item.get("role") in ("system", "developer"):
                prompt.system = " ".join([prompt.system, *texts]).strip()
            elif item.get("role") == "user":
                prompt.tool_results = []
                if texts:
                    prompt.user_texts.append(" ".join(texts))
                prompt.prompt_chars += sum(len(t) for t in texts)
            else:
                prompt.tool_results = []
        elif kind == "function_call":
            prompt.tool_results = []
            names[str(item.get("call_id"))] = str(item.get("name"))
        elif kind == "function_call_output":
            call_id = str(item.get("call_id"))
            prompt.tool_results.append((names.get(call_id, call_id), str(item.get("output"))))
    prompt.tools = [{"name": t["name"], "schema": t.get("parameters")} for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        prompt.tool_choice = ("function", str(choice.get("name")))
    elif isinstance(choice, str):
        prompt.tool_choice = choice
    fmt = (body.get("text") or {}).get("format") or {}
    prompt.json_mode = fmt.get("type") in ("json_object", "json_schema")
    if fmt.get("type") == "json_schema":
        prompt.json_schema = fmt.get("schema")
    prompt.thinking = ((body.get("reasoning") or {}).get("effort") or "none") != "none"
    prompt.max_tokens = body.get("max_output_tokens")
    return prompt


class ResponsesAPI:
    """The endpoints, recording each request in ``record`` and authenticating with
    ``authorized`` (the chat simulator's own key rules)."""

    def __init__(
        self, record: Callable[[web.Request, dict[str, Any]], None], authorized: Callable[[web.Request], bool]
    ) -> None:
        self.stored: dict[str, Stored] = {}
        self._record = record
        self._authorized = authorized

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self.create)
        app.router.add_get("/v1/responses/{id}", self.retrieve)
        app.router.add_delete("/v1/responses/{id}", self.delete)
        app.router.add_get("/v1/responses/{id}/input_items", self.input_items)

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided")
        model = str(body.get("model"))
        status = re.search(r"-status-(\d{3})$", model)
        if status:
            return _error(int(status.group(1)), f"simulated {status.group(1)}")
        context: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous:
            if previous not in self.stored:
                return _error(400, f"Previous response with id '{previous}' not found.", "previous_response_id")
            context = list(self.stored[previous].context)
        turn = _items(body.get("input"))
        answer = script.answer(_prompt(body, context + turn))
        reply, prompt_tokens = answer.candidates[0], answer.prompt_tokens
        output: list[dict[str, Any]] = []
        wants_summary = bool((body.get("reasoning") or {}).get("summary"))
        if reply.thinking:
            item: dict[str, Any] = {
                "id": _id("rs"),
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": reply.thinking}] if wants_summary else [],
            }
            if "reasoning.encrypted_content" in (body.get("include") or []):
                item["encrypted_content"] = "gAAAA-openai-sealed-" + uuid.uuid4().hex
            output.append(item)
        if reply.text or not reply.tool_calls:
            output.append(
                {
                    "id": _id("msg"),
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}],
                }
            )
        for call in reply.tool_calls:
            output.append(
                {
                    "id": _id("fc"),
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": json.dumps(call.args),
                }
            )
        thought = reply.thinking_tokens
        response = {
            "id": _id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if reply.finish == "length" else "completed",
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if reply.finish == "length" else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": previous,
            "store": body.get("store", True),
            "temperature": 1.0,
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
                "output_tokens": reply.output_tokens + thought,
                "output_tokens_details": {"reasoning_tokens": thought},
                "total_tokens": prompt_tokens + reply.output_tokens + thought,
            },
            "metadata": body.get("metadata") or {},
        }
        failing = model.endswith("-midstream-error")
        if response["store"] and not failing:
            self.stored[response["id"]] = Stored(response, context + turn + output, turn)
        if not body.get("stream"):
            return web.json_response(response)
        return await self._stream(request, response, failing)

    async def _stream(self, request: web.Request, response: dict[str, Any], failing: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        seq = 0

        async def send(kind: str, **fields: Any) -> None:
            nonlocal seq
            payload = {"type": kind, "sequence_number": seq, **fields}
            seq += 1
            await resp.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())

        begun = {**response, "status": "in_progress", "output": [], "usage": None}
        await send("response.created", response=begun)
        await send("response.in_progress", response=begun)
        for index, item in enumerate(response["output"]):
            at = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                await send("response.output_item.added", output_index=index, item={**item, "content": []})
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                await send("response.content_part.added", **at, content_index=0, part=part)
                text = item["content"][0]["text"]
                for n, piece in enumerate(script.words(text)):
                    await send("response.output_text.delta", **at, content_index=0, delta=piece, logprobs=[])
                    if failing and n == 1:
                        failed = {
                            **begun,
                            "status": "failed",
                            "error": {"code": "server_error", "message": "simulated overload"},
                        }
                        await send("response.failed", response=failed)
                        return resp
                await send("response.output_text.done", **at, content_index=0, text=text, logprobs=[])
                await send("response.content_part.done", **at, content_index=0, part=item["content"][0])
            elif item["type"] == "function_call":
                await send("response.output_item.added", output_index=index, item={**item, "arguments": ""})
                half = len(item["arguments"]) // 2
                for piece in (item["arguments"][:half], item["arguments"][half:]):
                    await send("response.function_call_arguments.delta", **at, delta=piece)
                await send("response.function_call_arguments.done", **at, arguments=item["arguments"])
            else:
                await send("response.output_item.added", output_index=index, item={**item, "summary": []})
            await send("response.output_item.done", output_index=index, item=item)
        final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        await send(final, response=response)
        return resp

    async def retrieve(self, request: web.Request) -> web.Response:
        self._record(request, {})
        found = self.stored.get(request.match_info["id"])
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided")
        if found is None:
            return _error(404, f"Response with id '{request.match_info['id']}' not found.")
        return web.json_response(found.response)

    async def delete(self, request: web.Request) -> web.Response:
        self._record(request, {})
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided")
        found = self.stored.pop(request.match_info["id"], None)
        if found is None:
            return _error(404, f"Response with id '{request.match_info['id']}' not found.")
        return web.json_response({"id": request.match_info["id"], "object": "response", "deleted": True})

    async def input_items(self, request: web.Request) -> web.Response:
        self._record(request, {})
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided")
        found = self.stored.get(request.match_info["id"])
        if found is None:
            return _error(404, f"Response with id '{request.match_info['id']}' not found.")
        items = found.context[: len(found.context) - len(found.response["output"])]
        if request.query.get("order", "desc") == "desc":
            items = items[::-1]
        limit = int(request.query.get("limit", "20"))
        page = items[:limit]
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            }
        )
