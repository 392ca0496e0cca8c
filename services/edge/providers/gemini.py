"""Google Gemini (``generateContent``, ``streamGenerateContent?alt=sse``, ``embedContent``,
``batchEmbedContents``) behind OpenAI's schemas.

Request: system and developer messages become ``systemInstruction``; assistant turns become
``model`` turns with ``functionCall`` parts; tool results become ``functionResponse`` parts,
consecutive ones in one turn; images, files, audio and video become ``inlineData`` (an image
URL is fetched by the gateway, with the SSRF guard of :mod:`services.edge.media`, because
Gemini only takes its own file URIs; audio and video may come as an ``image_url`` with a
``mime_type``, fetched the same way, or handed to Gemini as ``fileData`` for a YouTube URL);
JSON Schemas (tools and ``json_schema``) are normalised to Gemini's schema dialect;
``reasoning_effort`` becomes a thinking budget; ``n``, ``seed``, ``logprobs`` map to ``generationConfig``.

Gemini 2.5 and 3 sign their reasoning: the ``thoughtSignature`` of a part must come back with
that part on the next turn or the request fails. A signature on a function call travels as
``tool_calls[].extra_content.google.thought_signature`` (the shape Google's own
OpenAI-compatible endpoint uses) and one on text as the message's
``extra_content.google.thought_signature``; both are put back on their parts.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from services.edge.canonical import openai_chat
from services.edge.canonical.model import (
    Answer,
    Assistant,
    Choice,
    Conversation,
    Finish,
    Image,
    NamedTool,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    User,
)
from services.edge.providers import common, gemini_replies
from services.edge.providers.base import Call, Completion, StreamMeter, Usage, estimate_tokens
from services.edge.providers.common import ChunkWriter, invalid
from services.edge.providers.wire import gather, open_stream, post_json, read_reply, relay
from shared.errors import UPSTREAM, GatewayError

EMBED_BATCH = 100  # batchEmbedContents' limit of requests per call
EMBEDDING_PARAMS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
MAX_FETCHED_IMAGES = 16  # image URLs the gateway fetches for one request
# A URL the gateway fetches: the part to fill, the URL, the part's name, the MIME type declared.
Fetch = tuple[dict[str, Any], str, str, str | None]

SUPPORTED = common.TRANSLATED_PARAMS | {
    "n",
    "seed",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
}

FINISH: dict[str, Finish] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}

_ERROR_CODES = {
    "INVALID_ARGUMENT": None,
    "FAILED_PRECONDITION": None,
    "UNAUTHENTICATED": "invalid_api_key",
    "PERMISSION_DENIED": None,
    "NOT_FOUND": "model_not_found",
    "RESOURCE_EXHAUSTED": "rate_limit_exceeded",
    "INTERNAL": "upstream_error",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "upstream_timeout",
}

# What Gemini's schema dialect (an OpenAPI 3.0 subset) keeps of a JSON Schema.
_SCHEMA_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "anyOf",
    "propertyOrdering",
    "default",
}


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema in Gemini's dialect: references inlined, ``["T", "null"]`` as
    ``nullable``, ``const`` as a one-value ``enum``, property order kept, the rest
    (``additionalProperties``, ``$schema``, ``strict``...) left out."""
    out = _normalise(common.inline_refs(schema))
    assert isinstance(out, dict)
    return out


def _normalise(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            kind = kinds[0]
        else:
            out["anyOf"] = [{"type": str(k).upper()} for k in kinds]
            kind = None
    if isinstance(kind, str):
        out["type"] = kind.upper()
    if "const" in node:
        const = node["const"]
        out["enum"] = [const if isinstance(const, str) else json.dumps(const)]
        out.setdefault("type", "STRING")
    for key, value in node.items():
        if key not in _SCHEMA_KEYS or key == "type" or key in out:
            continue
        if key == "properties" and isinstance(value, dict):
            out["properties"] = {name: _normalise(sub) for name, sub in value.items()}
            out.setdefault("propertyOrdering", list(value))
        elif key == "items":
            out["items"] = _normalise(value)
        elif key == "anyOf" and isinstance(value, list):
            variants = [v for v in value if not (isinstance(v, dict) and v.get("type") == "null")]
            if len(variants) != len(value):
                out["nullable"] = True
            out["anyOf"] = [_normalise(v) for v in variants]
            if len(out["anyOf"]) == 1:
                out.update(out.pop("anyOf")[0])
        elif key == "enum" and isinstance(value, list):
            out["enum"] = [v if isinstance(v, str) else json.dumps(v) for v in value]
            out.setdefault("type", "STRING")
        else:
            out[key] = value
    return out


# --- request -------------------------------------------------------------------------------


async def to_gemini(call: Call) -> dict[str, Any]:
    common.check_params(call, SUPPORTED)
    conv = call.conversation
    if conv.parallel_tool_calls is False:
        call.unsupported("parallel_tool_calls", "Gemini cannot be told to call one function at a time")
    out: dict[str, Any] = {}
    system, contents, details = await _contents(call, conv)
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    out["contents"] = contents

    config: dict[str, Any] = {}
    if conv.max_tokens is not None:
        config["maxOutputTokens"] = conv.max_tokens
    for key, value in (
        ("temperature", conv.temperature),
        ("topP", conv.top_p),
        ("seed", conv.seed),
        ("presencePenalty", conv.presence_penalty),
        ("frequencyPenalty", conv.frequency_penalty),
    ):
        if value is not None:
            config[key] = value
    if conv.stop:
        config["stopSequences"] = conv.stop
    if conv.n is not None:
        config["candidateCount"] = conv.n
    if conv.logprobs:
        config["responseLogprobs"] = True
        if conv.top_logprobs:
            config["logprobs"] = conv.top_logprobs
    if conv.json_format is not None:
        config["responseMimeType"] = "application/json"
        if conv.json_format.schema_ is not None:
            config["responseSchema"] = gemini_schema(conv.json_format.schema_)
    if conv.reasoning == "none":
        config["thinkingConfig"] = {"thinkingBudget": 0}
    elif conv.reasoning is not None:
        budget = common.REASONING_BUDGETS[conv.reasoning]
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    if details and len(set(details)) == 1:
        config["mediaResolution"] = {"low": "MEDIA_RESOLUTION_LOW", "high": "MEDIA_RESOLUTION_HIGH"}[details[0]]
    if config:
        out["generationConfig"] = config

    if conv.tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t) for t in conv.tools]}]
        choice = conv.tool_choice
        if choice is not None:
            if isinstance(choice, NamedTool):
                mode: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
            else:
                mode = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}
            out["toolConfig"] = {"functionCallingConfig": mode}
    return out


def _declaration(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    params = gemini_schema(tool.parameters)
    if params.get("properties"):  # Gemini refuses an OBJECT without properties
        out["parameters"] = params
    return out


def _signature(extra: dict[str, Any] | None) -> str | None:
    """Gemini's thought signature from ``extra_content.google.thought_signature``."""
    google = extra.get("google") if extra is not None else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) and sig else None


async def _contents(call: Call, conv: Conversation) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    turns = common.Turns("parts")
    details: list[str] = []
    fetches: list[Fetch] = []
    for i, message in enumerate(conv.messages):
        where = f"messages[{i}]"
        if turns.take(call, where, message, "Gemini"):
            continue
        if isinstance(message, User):
            turns.add("user", _user_parts(message, where, details, fetches))
        elif isinstance(message, Assistant):
            turns.add("model", _model_parts(message))
        elif isinstance(message, ToolResult):
            if message.name is None:
                raise invalid(
                    f"{where}.tool_call_id does not match a tool call of an earlier assistant message.",
                    f"{where}.tool_call_id",
                )
            try:
                parsed = json.loads(message.text)
            except ValueError:
                parsed = None
            response = parsed if isinstance(parsed, dict) else {"result": message.text}
            turns.add("user", [{"functionResponse": {"name": message.name, "response": response}}])
    contents = turns.checked("Gemini")
    await _fetch_images(call, fetches)
    return turns.system, contents, details


def _youtube(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be")


async def _fetch_images(call: Call, fetches: list[Fetch]) -> None:
    """Fetch every image URL of the request at once (Gemini takes only inline data), after
    the whole request was checked, so a bad request fetches nothing."""
    if not fetches:
        return
    if call.media is None:
        raise invalid("this gateway does not fetch image URLs.", fetches[0][2], "invalid_image_url")
    if len(fetches) > MAX_FETCHED_IMAGES:
        raise invalid(
            f"at most {MAX_FETCHED_IMAGES} image URLs per request can be sent to Gemini; send the rest inline.",
            fetches[MAX_FETCHED_IMAGES][2],
            "invalid_image_url",
        )
    fetched = await gather([call.media.fetch(url, param, declared) for _, url, param, declared in fetches])
    for (part, _, _, _), item in zip(fetches, fetched, strict=True):
        part["inlineData"] = {"mimeType": item.mime, "data": item.data}


def _user_parts(message: User, where: str, details: list[str], fetches: list[Fetch]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        param = f"{where}.content[{j}]"
        if isinstance(part, Text):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, Image):  # audio or video may come as an image_url with a mime_type
            if part.detail in ("low", "high"):
                details.append(part.detail)
            if part.inline is not None:
                parts.append({"inlineData": {"mimeType": part.declared or part.inline.mime, "data": part.inline.data}})
            elif part.declared is not None and _youtube(part.url):
                parts.append({"fileData": {"mimeType": part.declared, "fileUri": part.url}})  # Gemini reads YouTube
            else:
                placeholder: dict[str, Any] = {}
                fetches.append((placeholder, part.url, param, part.declared))
                parts.append(placeholder)
        else:  # a file or audio, inline
            parts.append({"inlineData": {"mimeType": part.inline.mime, "data": part.inline.data}})
    return parts


SKIP_SIGNATURE = "skip_thought_signature_validator"


def _model_parts(message: Assistant) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    signature = _signature(message.extra_content)
    if message.text or signature:
        part: dict[str, Any] = {"text": message.text}
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    unsigned = not any(_signature(tc.extra_content) for tc in message.tool_calls)
    for k, tc in enumerate(message.tool_calls):
        fc: dict[str, Any] = {"functionCall": {"name": tc.name, "args": tc.arguments}}
        sig = _signature(tc.extra_content)
        if sig:
            fc["thoughtSignature"] = sig
        elif k == 0 and unsigned:
            # Calls Gemini did not make (another model's, or a history the client rebuilt) carry
            # no signature; Gemini 3 refuses a turn whose first call has none unless it is
            # Google's documented sentinel.
            fc["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(fc)
    return parts


# --- reply ---------------------------------------------------------------------------------


def usage_of(meta: Mapping[str, Any]) -> Usage:
    """OpenAI's completion tokens include reasoning; Gemini counts thoughts apart."""
    candidates = common.count(meta.get("candidatesTokenCount"))
    thoughts = common.count(meta.get("thoughtsTokenCount"))
    return Usage(
        prompt_tokens=common.count(meta.get("promptTokenCount")) + common.count(meta.get("toolUsePromptTokenCount")),
        completion_tokens=candidates + thoughts,
        cached_tokens=common.count(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _call_id() -> str:
    return "call_" + os.urandom(12).hex()


def _logprobs(candidate: Mapping[str, Any]) -> dict[str, Any] | None:
    result = candidate.get("logprobsResult")
    if not isinstance(result, dict):
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for k, item in enumerate(chosen):
        token = str(item.get("token", ""))
        top = tops[k].get("candidates", []) if k < len(tops) and isinstance(tops[k], dict) else []
        content.append(
            {
                "token": token,
                "logprob": float(item.get("logProbability", 0.0)),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {
                        "token": str(t.get("token", "")),
                        "logprob": float(t.get("logProbability", 0.0)),
                        "bytes": list(str(t.get("token", "")).encode()),
                    }
                    for t in top
                ],
            }
        )
    return {"content": content, "refusal": None}


def _finish(reason: Any, has_calls: bool) -> Finish:
    finish = FINISH.get(str(reason), "stop")
    return "tool_calls" if finish == "stop" and has_calls else finish


def to_openai(reply: dict[str, Any], model: str) -> tuple[bytes, Usage]:
    usage = usage_of(reply.get("usageMetadata") or {})
    return openai_chat.completion(answer_of(reply), model, usage), usage


def answer_of(reply: dict[str, Any]) -> Answer:
    """A generateContent reply (checked by gemini_replies.REPLY) read: a choice per
    candidate, with thoughts as reasoning and thought signatures kept where they came (on a
    function call, or on the text); no candidate at all means the prompt was blocked."""
    choices = []
    for position, candidate in enumerate(reply.get("candidates") or []):
        if not isinstance(candidate, dict):
            continue
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[ToolCall] = []
        signature = None
        for part in (candidate.get("content") or {}).get("parts") or []:
            if not isinstance(part, dict):
                continue
            sig = part.get("thoughtSignature")
            if "functionCall" in part:
                fc = part["functionCall"] or {}
                extra = {"google": {"thought_signature": sig}} if sig else None
                call_id = str(fc.get("id") or _call_id())
                calls.append(
                    ToolCall(
                        id=call_id, name=str(fc.get("name") or ""), arguments=fc.get("args") or {}, extra_content=extra
                    )
                )
            elif part.get("thought"):
                reasoning.append(str(part.get("text") or ""))
            elif "text" in part:
                text.append(str(part.get("text") or ""))
                signature = sig or signature
        turn = Assistant(
            text="".join(text),
            tool_calls=calls,
            reasoning="".join(reasoning),
            extra_content={"google": {"thought_signature": signature}} if signature else None,
        )
        index = candidate.get("index")
        choices.append(
            Choice(
                index=index if isinstance(index, int) else position,
                message=turn,
                finish=_finish(candidate.get("finishReason"), bool(calls)),
                logprobs=_logprobs(candidate),
            )
        )
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices.append(Choice(message=Assistant(), finish="content_filter"))
    return Answer(id="chatcmpl-" + str(reply.get("responseId") or os.urandom(12).hex()), choices=choices)


def error_from(status: int, raw: bytes, provider: str, headers: Mapping[str, str]) -> GatewayError:
    message, state, reasons = "", "", set()
    try:
        body = json.loads(raw)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(body, list) and body and isinstance(body[0], dict):
            err = body[0].get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            state = str(err.get("status") or "")
            for detail in err.get("details") or []:
                if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
                    reasons.add(detail["reason"])
    except ValueError:
        pass
    if status == 400 and ("API_KEY_INVALID" in reasons or "API key not valid" in message):
        status = 401  # Gemini reports a bad key as INVALID_ARGUMENT; it is the key that is refused
        state = "UNAUTHENTICATED"
    return common.provider_error(status, message, provider, headers, code=_ERROR_CODES.get(state))


# --- stream --------------------------------------------------------------------------------


class GeminiStream:
    """Gemini stream chunks in, OpenAI chunks out.

    Each chunk is a whole ``GenerateContentResponse`` holding the next parts of each
    candidate. A function call arrives whole, so it becomes one tool-call delta whose
    ``index`` counts that candidate's calls. Gemini has no end event: the stream is complete
    when the body ends after every candidate sent its ``finishReason``.
    """

    schema: TypeAdapter[Any] | None = gemini_replies.REPLY  # each chunk is checked before feed()

    def __init__(self, model: str, meter: StreamMeter, wants_usage: bool) -> None:
        self.out = ChunkWriter("chatcmpl-" + os.urandom(12).hex(), model)
        self.meter = meter
        self.wants_usage = wants_usage
        self.finished = False
        self.started: set[int] = set()
        self.done: set[int] = set()
        self.tool_counts: dict[int, int] = {}
        self.usage: dict[str, Any] = {}

    def feed(self, event: dict[str, Any], data: bytes = b"") -> list[bytes]:
        if "error" in event:
            err = event["error"] if isinstance(event["error"], dict) else {}
            code = err.get("code")
            raise common.provider_error(
                code if isinstance(code, int) else 502,
                str(err.get("message") or "provider error"),
                "gemini",
                {},
                code=_ERROR_CODES.get(str(err.get("status"))) or "upstream_error",
            )
        if isinstance(event.get("responseId"), str):
            self.out.id = "chatcmpl-" + event["responseId"]
        if isinstance(event.get("usageMetadata"), dict):
            # Running counts until the last chunk: metered from eof(), so a cut stream is
            # estimated (and flagged) rather than billed with a partial count.
            self.usage = event["usageMetadata"]
            if "promptTokenCount" in self.usage:
                self.meter.prompt_tokens = usage_of(self.usage).prompt_tokens
        out: list[bytes] = []
        candidates = event.get("candidates")
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            out.append(self.out.delta(0, {"role": "assistant", "content": ""}))
            out.append(self.out.delta(0, {}, "content_filter"))
            self.started.add(0)
            self.done.add(0)
            return out
        for position, candidate in enumerate(candidates or []):
            if not isinstance(candidate, dict):
                continue
            given = candidate.get("index")
            index: int = given if isinstance(given, int) else position
            if index not in self.started:
                self.started.add(index)
                out.append(self.out.delta(index, {"role": "assistant", "content": ""}))
            for part in (candidate.get("content") or {}).get("parts") or []:
                if isinstance(part, dict):
                    out.extend(self._part(index, part))
            logprobs = _logprobs(candidate)
            if logprobs is not None and logprobs["content"]:
                out.append(self.out.chunk([{"index": index, "delta": {}, "logprobs": logprobs, "finish_reason": None}]))
            reason = candidate.get("finishReason")
            if reason and index not in self.done:
                self.done.add(index)
                out.append(self.out.delta(index, {}, _finish(reason, self.tool_counts.get(index, 0) > 0)))
        return out

    def _part(self, index: int, part: dict[str, Any]) -> list[bytes]:
        sig = part.get("thoughtSignature")
        if "functionCall" in part:
            fc = part["functionCall"] or {}
            position = self.tool_counts.get(index, 0)
            self.tool_counts[index] = position + 1
            args = json.dumps(fc.get("args") or {})
            name = str(fc.get("name") or "")
            self.meter.saw_content(len(name) + len(args))
            tc: dict[str, Any] = {
                "index": position,
                "id": str(fc.get("id") or _call_id()),
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
            if sig:
                tc["extra_content"] = {"google": {"thought_signature": sig}}
            return [self.out.delta(index, {"tool_calls": [tc]})]
        text = str(part.get("text") or "")
        self.meter.saw_content(len(text))
        if part.get("thought"):
            return [self.out.delta(index, {"reasoning_content": text})] if text else []
        delta: dict[str, Any] = {}
        if text:
            delta["content"] = text
        if sig:
            delta["extra_content"] = {"google": {"thought_signature": sig}}
        return [self.out.delta(index, delta)] if delta else []

    def eof(self) -> None:
        self.finished = bool(self.started) and self.started <= self.done
        if self.finished:
            self.meter.usage = usage_of(self.usage)

    def close(self) -> list[bytes]:
        return self.out.end(usage_of(self.usage) if self.wants_usage else None)


# --- embeddings ----------------------------------------------------------------------------


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) for v in value):
        raise invalid("Gemini embeds text; token arrays cannot be sent to it.", "input", "unsupported_parameter")
    raise invalid("'input' must be a non-empty string or array of strings.", "input")


def _vectors(items: list[Any]) -> list[list[float]]:
    """The float vectors of Gemini ``ContentEmbedding`` objects (a wrong shape raises)."""
    return [[float(x) for x in item["values"]] for item in items]


def encode_embedding(values: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


# --- adapter -------------------------------------------------------------------------------


def _headers(call: Call) -> dict[str, str]:
    return common.json_headers(call)


def _url(call: Call, method: str) -> str:
    model = common.path_segment(call.route.upstream_model)
    return f"{call.provider.base_url.rstrip('/')}/v1beta/models/{model}:{method}"


class GeminiAdapter:
    async def target(self, call: Call, method: str) -> tuple[str, dict[str, str]]:
        """The URL of ``method`` for the call's model, and the request headers (with the key)."""
        return _url(call, method), _headers(call)

    async def chat(self, call: Call) -> Completion:
        body = await to_gemini(call)
        provider = call.route.provider
        url, headers = await self.target(call, "generateContent")
        raw, upstream_ms = await post_json(call, url, body, headers, lambda s, r, h: error_from(s, r, provider, h))
        reply = common.parse_json_reply(raw, provider)
        out, usage = read_reply(provider, gemini_replies.REPLY, reply, lambda: to_openai(reply, call.route.model))
        return Completion(body=out, usage=usage, upstream_ms=upstream_ms)

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        body = await to_gemini(call)
        provider = call.route.provider
        url, headers = await self.target(call, "streamGenerateContent?alt=sse")
        resp = await open_stream(call, url, body, headers, lambda s, r, h: error_from(s, r, provider, h))
        return relay(call, resp, GeminiStream(call.route.model, meter, call.wants_usage_chunk), meter)

    async def embed(self, call: Call) -> Completion:
        body = call.body
        common.check_params(call, EMBEDDING_PARAMS)
        texts = embedding_inputs(body)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise invalid("encoding_format must be float or base64.", "encoding_format")
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
            raise invalid("'dimensions' must be a positive integer.", "dimensions")
        model_path = f"models/{call.route.upstream_model}"
        provider = call.route.provider

        def request(text: str) -> dict[str, Any]:
            item: dict[str, Any] = {"model": model_path, "content": {"parts": [{"text": text}]}}
            if dims is not None:
                item["outputDimensionality"] = dims
            return item

        def on_error(s: int, r: bytes, h: Mapping[str, str]) -> GatewayError:
            return error_from(s, r, provider, h)

        if len(texts) == 1:
            url, headers = await self.target(call, "embedContent")
            raw, upstream_ms = await post_json(call, url, request(texts[0]), headers, on_error)
            reply = common.parse_json_reply(raw, provider)
            vectors = read_reply(provider, gemini_replies.EMBED, reply, lambda: _vectors([reply["embedding"]]))
        else:
            # batchEmbedContents takes at most EMBED_BATCH inputs: larger lists go as several
            # batches at once, their vectors joined in order.
            async def batch(chunk: list[str]) -> tuple[list[list[float]], float]:
                body = {"requests": [request(t) for t in chunk]}
                url, headers = await self.target(call, "batchEmbedContents")
                raw, ms = await post_json(call, url, body, headers, on_error)
                reply = common.parse_json_reply(raw, provider)
                got = read_reply(provider, gemini_replies.BATCH_EMBED, reply, lambda: _vectors(reply["embeddings"]))
                if len(got) != len(chunk):
                    raise GatewayError(
                        UPSTREAM, f"provider {provider!r} returned {len(got)} embeddings for {len(chunk)} inputs"
                    )
                return got, ms

            chunks = [texts[k : k + EMBED_BATCH] for k in range(0, len(texts), EMBED_BATCH)]
            results = await gather([batch(chunk) for chunk in chunks])
            vectors = [vector for got, _ in results for vector in got]
            upstream_ms = max(ms for _, ms in results)
        if len(vectors) != len(texts):
            raise GatewayError(
                UPSTREAM, f"provider {provider!r} returned {len(vectors)} embeddings for {len(texts)} inputs"
            )
        # Gemini reports no token counts for embeddings: estimated, and flagged as such.
        prompt = sum(estimate_tokens(len(t)) for t in texts)
        usage = Usage(prompt_tokens=prompt, estimated=True)
        payload = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": k, "embedding": encode_embedding(v, encoding)}
                for k, v in enumerate(vectors)
            ],
            "model": call.route.model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return Completion(
            body=json.dumps(payload, separators=(",", ":")).encode(), usage=usage, upstream_ms=upstream_ms
        )
