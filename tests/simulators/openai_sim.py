"""An OpenAI-format provider simulator speaking the Chat Completions wire format.

Behaviour is chosen by the model name, so one simulator serves every test:

- any model: a normal completion; streams follow OpenAI's chunk order (role chunk, content
  chunks, a finish chunk, the usage chunk with empty ``choices`` when
  ``stream_options.include_usage`` is set, then ``data: [DONE]``);
- ``*-slow``: waits before answering (timeout tests);
- ``*-status-<code>``: answers that HTTP status with an OpenAI error body (429 adds
  ``retry-after``);
- ``*-truncate``: a stream that stops mid-answer without a finish reason or ``[DONE]``;
- ``*-midstream-error``: a stream that sends an error event mid-answer;
- ``*-long``: a slow stream of many chunks (client-disconnect tests).

OpenAI's Responses API (``/v1/responses``) is served too, by tests/simulators/openai_responses.py.

Provider keys starting ``sk-invalid`` get 401 and ``sk-ratelimited`` get 429, whatever the model;
keys in ``state.revoked`` get 401 too (chat and the model listing) until a test takes them out.

Failures on demand: ``state.faults[model]`` is a list of :class:`Fault`; each request for that
model takes the first one (a status with ``retry-after``, a stall before the reply, a slow
first chunk, a stream cut after N chunks). A model with no faults left answers normally.

Every request is recorded (path, headers, body), and every stream records whether it ran to
the end or the peer went away.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.simulators import script
from tests.simulators.openai_responses import ResponsesAPI
from tests.simulators.server import Recorded, ThreadedServer

REPLY = "Hello from the simulator, friend"
PROMPT_TOKENS = 11
CACHED_TOKENS = 3


@dataclass
class StreamLog:
    model: str
    chunks_sent: int = 0
    completed: bool = False
    cancelled: bool = False


@dataclass
class Fault:
    """One failure a request meets (the first that applies)."""

    status: int | None = None  # answer this HTTP status (an OpenAI error body)
    retry_after: str | None = None  # with this retry-after header
    stall: float = 0.0  # seconds before anything is answered (headers included)
    first_chunk_delay: float = 0.0  # streams: seconds between the headers and the first chunk
    cut_after: int | None = None  # streams: close the connection after this many chunks
    pause_after: int | None = None  # streams: go quiet after this many chunks ...
    pause: float = 0.0  # ... for this long, then go on


@dataclass
class SimState:
    requests: list[Recorded] = field(default_factory=list)
    streams: list[StreamLog] = field(default_factory=list)
    slow_seconds: float = 5.0
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    hold_seconds: float = 1.0  # how long a "-hold" model's request stays open
    hold_models: set[str] = field(default_factory=set)  # more models held so (a test's own)
    in_flight: dict[str, int] = field(default_factory=dict)  # per model, now
    peak_in_flight: dict[str, int] = field(default_factory=dict)  # per model, the most at once

    def fault_for(self, model: str) -> Fault | None:
        pending = self.faults.get(model)
        return pending.pop(0) if pending else None


def _usage(completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
    }


def _error(status: int, retry_after: str | None = None) -> web.Response:
    kinds = {
        400: ("invalid_request_error", "invalid_value"),
        401: ("invalid_request_error", "invalid_api_key"),
        404: ("invalid_request_error", "model_not_found"),
        429: ("rate_limit_error", "rate_limit_exceeded"),
        500: ("server_error", None),
        503: ("server_error", None),
    }
    err_type, code = kinds.get(status, ("server_error", None))
    body = {"error": {"message": f"simulated {status}", "type": err_type, "param": None, "code": code}}
    headers = {"retry-after": retry_after or "7"} if status == 429 or retry_after else {}
    return web.json_response(body, status=status, headers=headers)


class OpenAISimulator(ThreadedServer):
    name = "openai-sim"

    def __init__(self) -> None:
        super().__init__()
        self.state = SimState()
        self.responses = ResponsesAPI(self._record, self._authorized)

    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body))

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("authorization", "")
        return not (
            auth == "" or auth.startswith("Bearer sk-invalid") or auth.removeprefix("Bearer ") in self.state.revoked
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- handlers -------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400)
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body, raw))
        auth = request.headers.get("authorization", "")
        deployment = request.match_info.get("deployment")
        if deployment is not None:  # Azure OpenAI: deployment in the path, key in api-key
            if not request.query.get("api-version"):
                return _error(400)
            if "model" in body:
                return _error(400)
            auth = "Bearer " + request.headers.get("api-key", "") if request.headers.get("api-key") else ""
            body["model"] = deployment
        if request.path.startswith("/selfhosted/"):
            auth = "Bearer keyless"  # a self-hosted server without keys (vLLM, Ollama)
        if auth == "" or auth.startswith("Bearer sk-invalid") or auth.removeprefix("Bearer ") in self.state.revoked:
            return _error(401)
        if auth.startswith("Bearer sk-ratelimited"):
            return _error(429)
        model = str(body.get("model", ""))
        if model.endswith("-hold") or model in self.state.hold_models:
            state = self.state
            state.in_flight[model] = state.in_flight.get(model, 0) + 1
            state.peak_in_flight[model] = max(state.peak_in_flight.get(model, 0), state.in_flight[model])
            try:
                await asyncio.sleep(state.hold_seconds)
            finally:
                state.in_flight[model] -= 1
        fault = self.state.fault_for(model)
        if fault is not None and fault.stall:
            await asyncio.sleep(fault.stall)
        if fault is not None and fault.status is not None:
            return _error(fault.status, fault.retry_after)
        status = re.search(r"-status-(\d{3})$", model)
        if status:
            return _error(int(status.group(1)))
        if model.endswith("-slow"):
            await asyncio.sleep(self.state.slow_seconds)
        if model.startswith(SCRIPTED) and not re.search(r"-(truncate|midstream-error|long)$", model):
            return await scripted_reply(request, body)
        if body.get("stream"):
            return await self._stream(request, body, model, fault)
        words = REPLY.split()
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_sim",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": REPLY, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(len(words)),
            }
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], model: str, fault: Fault | None = None
    ) -> web.StreamResponse:
        log = StreamLog(model=model)
        self.state.streams.append(log)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_sim",
        }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            payload = dict(base, choices=choices, **extra)
            if include_usage and "usage" not in extra:
                payload["usage"] = None
            await resp.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            log.chunks_sent += 1

        words = [w + " " for w in REPLY.split()]
        if model.endswith("-long"):
            words = [f"{i:03d} " for i in range(200)]  # four characters: about one token each
        try:
            if fault is not None and fault.first_chunk_delay:
                await resp.write(b": keep-alive\n\n")  # the headers are out; no event yet
                await asyncio.sleep(fault.first_chunk_delay)
            if fault is not None and fault.cut_after is not None:
                for word in words[: fault.cut_after]:
                    await send([{"index": 0, "delta": {"content": word}, "logprobs": None, "finish_reason": None}])
                assert request.transport is not None
                request.transport.close()  # cut: no finish_reason, no [DONE]
                return resp
            await send(
                [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
            )
            for i, word in enumerate(words):
                if fault is not None and fault.pause_after == i:
                    await asyncio.sleep(fault.pause)
                await send([{"index": 0, "delta": {"content": word}, "logprobs": None, "finish_reason": None}])
                if model.endswith("-truncate") and i == 2:
                    log.completed = False
                    return resp  # the connection ends here: no finish_reason, no [DONE]
                if model.endswith("-midstream-error") and i == 2:
                    error = {
                        "error": {"message": "simulated overload", "type": "server_error", "param": None, "code": None}
                    }
                    await resp.write(b"data: " + json.dumps(error).encode() + b"\n\n")
                    return resp  # OpenAI's way to fail a stream it already started
                if model.endswith("-long"):
                    await asyncio.sleep(0.02)
            await send([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
            if include_usage:
                await send([], usage=_usage(len(words)))
            await resp.write(b"data: [DONE]\n\n")
            log.completed = True
        except (ConnectionResetError, asyncio.CancelledError):
            log.cancelled = True
            raise
        return resp

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        fault = self.state.fault_for(str(body.get("model", "")))
        if fault is not None and fault.status is not None:
            return _error(fault.status, fault.retry_after)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dims = int(body.get("dimensions") or 8)
        data = []
        for k, text in enumerate(texts):
            values = [round(((hash(str(text)) >> (d % 32)) & 0xFF) / 255, 6) for d in range(dims)]
            if body.get("encoding_format") == "base64":
                import base64
                import struct

                data.append(
                    {
                        "object": "embedding",
                        "index": k,
                        "embedding": base64.b64encode(struct.pack(f"<{dims}f", *values)).decode(),
                    }
                )
            else:
                data.append({"object": "embedding", "index": k, "embedding": values})
        tokens = sum(len(str(t).split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer sk-invalid") or auth.removeprefix("Bearer ") in self.state.revoked:
            return _error(401)
        return web.json_response(
            {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "sim"}]}
        )

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/selfhosted/v1/chat/completions", self.chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        self.responses.routes(app)


# --- the scripted model, in OpenAI's wire format (models gpt-4.1*, mistral-*, llama*) ------------

SCRIPTED = ("gpt-4.1", "mistral-", "llama")


def scripted_prompt(body: dict[str, Any]) -> script.Prompt:
    prompt = script.Prompt(model=str(body.get("model")))
    tool_names: dict[str, str] = {}
    for message in body.get("messages") or []:
        role, content = message.get("role"), message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if role in ("system", "developer"):
            prompt.system = " ".join([prompt.system, *(p.get("text", "") for p in parts)]).strip()
        elif role == "user":
            prompt.tool_results = []
            texts = [p["text"] for p in parts if p.get("type") == "text"]
            for p in parts:
                if p.get("type") == "image_url":
                    url = p["image_url"]["url"]
                    if url.startswith("data:"):
                        mime, _, data = url[5:].partition(";base64,")
                        prompt.media.append(script.Media("image", mime, script.decoded_size(data)))
                    else:
                        prompt.media.append(script.Media("image", "url", 0, url=url))
                elif p.get("type") == "file":
                    mime, _, data = p["file"]["file_data"][5:].partition(";base64,")
                    kind = "video" if mime.startswith("video/") else "document"
                    prompt.media.append(script.Media(kind, mime, script.decoded_size(data)))
                elif p.get("type") == "input_audio":
                    audio = p["input_audio"]
                    size = script.decoded_size(audio["data"])
                    prompt.media.append(script.Media("audio", f"audio/{audio['format']}", size))
            if texts:
                prompt.user_texts.append(" ".join(texts))
            prompt.prompt_chars += sum(len(t) for t in texts)
        elif role == "assistant":
            prompt.tool_results = []
            for tc in message.get("tool_calls") or []:
                tool_names[tc["id"]] = tc["function"]["name"]
        elif role == "tool":
            name = tool_names.get(message.get("tool_call_id"), message.get("tool_call_id"))
            prompt.tool_results.append((str(name), str(content)))
    prompt.tools = [
        {"name": t["function"]["name"], "schema": t["function"].get("parameters")} for t in body.get("tools") or []
    ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        prompt.tool_choice = ("function", choice["function"]["name"])
    elif isinstance(choice, str):
        prompt.tool_choice = choice
    fmt = body.get("response_format") or {}
    prompt.json_mode = fmt.get("type") in ("json_object", "json_schema")
    if fmt.get("type") == "json_schema":
        prompt.json_schema = fmt["json_schema"]["schema"]
    prompt.thinking = body.get("reasoning_effort") not in (None, "none")
    stop = body.get("stop")
    prompt.stop = [stop] if isinstance(stop, str) else list(stop or [])
    prompt.max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    prompt.n = int(body.get("n") or 1)
    return prompt


_OPENAI_FINISH = {"stop_sequence": "stop"}


def scripted_usage(reply: script.Answer) -> dict[str, Any]:
    out = sum(c.output_tokens + c.thinking_tokens for c in reply.candidates)
    reasoning = sum(c.thinking_tokens for c in reply.candidates)
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": out,
        "total_tokens": reply.prompt_tokens + out,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def scripted_message(cand: script.Candidate) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": cand.text if not cand.tool_calls else None,
        "refusal": None,
    }
    if cand.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.args)}}
            for c in cand.tool_calls
        ]
    return message


async def scripted_reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    reply = script.answer(scripted_prompt(body))
    model = str(body.get("model"))
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_sim",
    }
    logprobs = bool(body.get("logprobs"))
    top = int(body.get("top_logprobs") or 0)

    def token_logprobs(text: str) -> dict[str, Any] | None:
        if not logprobs:
            return None
        content = [
            {
                "token": t,
                "logprob": -0.25,
                "bytes": list(t.encode()),
                "top_logprobs": [
                    {"token": c, "logprob": lp, "bytes": list(c.encode())} for c, lp in ((t, -0.25), (t.upper(), -1.5))
                ][:top],
            }
            for t in script.words(text)
        ]
        return {"content": content, "refusal": None}

    if not body.get("stream"):
        choices = [
            {
                "index": k,
                "message": scripted_message(c),
                "logprobs": token_logprobs(c.text),
                "finish_reason": _OPENAI_FINISH.get(c.finish, c.finish),
            }
            for k, c in enumerate(reply.candidates)
        ]
        return web.json_response(dict(base, object="chat.completion", choices=choices, usage=scripted_usage(reply)))
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        payload = dict(base, object="chat.completion.chunk", choices=choices, **extra)
        await resp.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    for k, cand in enumerate(reply.candidates):
        await send(
            [{"index": k, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
        )
        for piece in script.words(cand.text if not cand.tool_calls else ""):
            await send(
                [{"index": k, "delta": {"content": piece}, "logprobs": token_logprobs(piece), "finish_reason": None}]
            )
        for t, call in enumerate(cand.tool_calls):
            args = json.dumps(call.args)
            head = {"index": t, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            await send([{"index": k, "delta": {"tool_calls": [head]}, "logprobs": None, "finish_reason": None}])
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                delta = {"tool_calls": [{"index": t, "function": {"arguments": piece}}]}
                await send([{"index": k, "delta": delta, "logprobs": None, "finish_reason": None}])
        finish = _OPENAI_FINISH.get(cand.finish, cand.finish)
        await send([{"index": k, "delta": {}, "logprobs": None, "finish_reason": finish}])
    if include_usage:
        await send([], usage=scripted_usage(reply))
    await resp.write(b"data: [DONE]\n\n")
    return resp
