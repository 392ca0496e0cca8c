"""Amazon Bedrock's Converse API (``/model/{modelId}/converse`` and ``/converse-stream``) behind
OpenAI's chat schema.

Request: system and developer messages become ``system``; user content becomes ``text``,
``image`` (bytes; an image URL is fetched by the gateway, with the SSRF guard of
:mod:`services.edge.media`, as Bedrock takes no URLs) and ``document`` blocks; assistant turns
become ``text``, ``toolUse`` and ``reasoningContent`` blocks (Claude's signed thinking, handed
back as it came); tool results become ``toolResult`` blocks of a user turn; ``max_tokens``,
``temperature``, ``top_p`` and ``stop`` go in ``inferenceConfig``; tools and ``tool_choice`` in
``toolConfig``; ``reasoning_effort`` becomes Claude's thinking budget. What Converse cannot
carry (``response_format``, ``tool_choice: none``, ``n``, ``logprobs``...) is a 400 naming it,
or dropped on request.

Reply: text, ``reasoning_content`` and ``thinking_blocks`` (with the signature), tool calls,
usage with cache reads and writes in the prompt tokens. Streams arrive as AWS event-stream
frames (binary, decoded with botocore) and become OpenAI chunks.

Authentication, by the provider key: a Bedrock API key (sent as a bearer token); an access key
``AKID:SECRET`` (or ``AKID:SECRET:SESSION_TOKEN``) signed with SigV4; or no key at all, and the
edge uses the standard AWS credential chain (environment, shared files, container and instance
roles) with SigV4. The region is the provider's location (``BEDROCK_REGION``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import TypeAdapter
from yarl import URL

from services.edge.canonical import openai_chat
from services.edge.canonical.model import (
    Answer,
    Assistant,
    Choice,
    File,
    Finish,
    Image,
    NamedTool,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    User,
)
from services.edge.providers import bedrock_replies, common
from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.providers.common import ChunkWriter, invalid
from services.edge.providers.wire import gather, open_stream, post_json, read_reply, relay
from shared.errors import NO_PROVIDER_KEY, GatewayError

if TYPE_CHECKING:  # botocore (some 25 MiB) is imported on the first Bedrock call, not by every edge
    import botocore.session
    from botocore.credentials import ReadOnlyCredentials

SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_TOKENS = 4096
SUPPORTED = common.TRANSLATED_PARAMS
IMAGE_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/html": "html",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
FINISH: dict[str, Finish] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Bedrock's exception types, by the HTTP status they stand for.
_EXCEPTION_STATUS = {
    "throttlingException": 429,
    "serviceUnavailableException": 503,
    "modelNotReadyException": 503,
    "validationException": 400,
    "accessDeniedException": 403,
    "modelTimeoutException": 504,
    "modelStreamErrorException": 502,
    "internalServerException": 500,
}
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9\s\-\(\)\[\]]")
MAX_FETCHED_IMAGES = 16
Fetch = tuple[dict[str, Any], str, str]


def _tool_id(value: Any) -> str:
    """Bedrock tool ids allow ``[a-zA-Z0-9_-]``; ids from other providers are mapped the same
    way on the call and on its result, so they still match."""
    return _ID_CHARS.sub("_", str(value)) or "tooluse_0"


def _document_name(filename: str | None, k: int) -> str:
    """A document name as Bedrock accepts it (letters, digits, single spaces, hyphens,
    parentheses, brackets), unique within the request."""
    stem = (filename or "").rsplit(".", 1)[0]
    name = re.sub(r"\s+", " ", _NAME_CHARS.sub(" ", stem)).strip()
    return f"{name or 'document'} {k}" if k else (name or "document")


def _anthropic_model(call: Call) -> bool:
    model = call.route.upstream_model
    return model.startswith("anthropic.") or ".anthropic." in model


# --- request -------------------------------------------------------------------------------


def to_converse(call: Call) -> tuple[dict[str, Any], list[Fetch]]:
    common.check_params(call, SUPPORTED)
    conv = call.conversation
    turns = common.Turns("content")
    fetches: list[Fetch] = []
    documents = [0]
    for i, message in enumerate(conv.messages):
        where = f"messages[{i}]"
        if turns.take(call, where, message, "Bedrock"):
            continue
        if isinstance(message, User):
            turns.add("user", _user_blocks(message, where, fetches, documents))
        elif isinstance(message, Assistant):
            turns.add("assistant", _assistant_blocks(message))
        elif isinstance(message, ToolResult):
            result = {"toolUseId": _tool_id(message.tool_call_id), "content": [{"text": message.text}]}
            turns.add("user", [{"toolResult": result}])
    out: dict[str, Any] = {"messages": turns.checked("Bedrock")}
    if turns.system:
        out["system"] = [{"text": text} for text in turns.system]

    config: dict[str, Any] = {}
    limit = conv.max_tokens
    if conv.reasoning not in (None, "none"):
        assert conv.reasoning is not None
        if not _anthropic_model(call):
            call.unsupported("reasoning_effort", "on Bedrock the gateway sets a thinking budget for Claude models only")
        else:
            budget = common.REASONING_BUDGETS[conv.reasoning]
            if limit is not None and limit <= 1024:
                raise invalid("with reasoning_effort, max_completion_tokens must be over 1024.", "max_tokens")
            if limit is not None and limit <= budget:
                budget = max(1024, limit // 2)
            out["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}
            limit = limit or budget + DEFAULT_MAX_TOKENS
    if limit is not None:
        config["maxTokens"] = limit
    for key, value in (("temperature", conv.temperature), ("topP", conv.top_p)):
        if value is not None:
            config[key] = value
    if conv.stop:
        config["stopSequences"] = conv.stop
    if config:
        out["inferenceConfig"] = config

    if conv.tools:
        specs = []
        for tool in conv.tools:
            schema = dict(tool.parameters)
            schema.setdefault("type", "object")
            spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": schema}}
            if tool.description:
                spec["description"] = tool.description
            specs.append({"toolSpec": spec})
        out["toolConfig"] = {"tools": specs}
        choice = conv.tool_choice
        if choice == "none":
            call.unsupported("tool_choice", "Bedrock's Converse API has no tool_choice none")
        elif choice == "required":
            out["toolConfig"]["toolChoice"] = {"any": {}}
        elif isinstance(choice, NamedTool):
            out["toolConfig"]["toolChoice"] = {"tool": {"name": choice.name}}
        elif choice == "auto":
            out["toolConfig"]["toolChoice"] = {"auto": {}}
        if conv.parallel_tool_calls is False:
            call.unsupported("parallel_tool_calls", "Bedrock's Converse API cannot turn parallel tool calls off")
    if conv.json_format is not None:
        call.unsupported("response_format", "Bedrock's Converse API has no JSON mode")
    return out, fetches


def _user_blocks(message: User, where: str, fetches: list[Fetch], documents: list[int]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        param = f"{where}.content[{j}]"
        if isinstance(part, Text):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, Image):  # Bedrock sizes images itself: detail has no use
            if part.declared is not None and part.declared not in IMAGE_FORMATS:
                raise invalid(f"Bedrock takes images as {', '.join(IMAGE_FORMATS)}, not {part.declared}.", param)
            if part.inline is not None:
                blocks.append(_image(part.inline.mime, part.inline.data, param))
            else:
                placeholder: dict[str, Any] = {}
                fetches.append((placeholder, part.url, param))
                blocks.append(placeholder)
        elif isinstance(part, File):
            fmt = DOCUMENT_FORMATS.get(part.inline.mime)
            if fmt is None:
                raise invalid(
                    f"Bedrock takes documents as {', '.join(sorted(DOCUMENT_FORMATS))}, not {part.inline.mime}.", param
                )
            name = _document_name(part.filename, documents[0])
            documents[0] += 1
            blocks.append({"document": {"format": fmt, "name": name, "source": {"bytes": part.inline.data}}})
        else:
            raise invalid("content part type 'input_audio' is not supported by Bedrock.", param)
    return blocks


def _image(mime: str, data: str, param: str) -> dict[str, Any]:
    fmt = IMAGE_FORMATS.get(mime)
    if fmt is None:
        raise invalid(f"Bedrock takes images as {', '.join(IMAGE_FORMATS)}, not {mime}.", param)
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _assistant_blocks(message: Assistant) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.thinking:
        if block.kind == "thinking":
            signed = {"text": block.text, "signature": block.signature}
            blocks.append({"reasoningContent": {"reasoningText": signed}})
        else:
            blocks.append({"reasoningContent": {"redactedContent": block.data}})
    if message.text:
        blocks.append({"text": message.text})
    for tc in message.tool_calls:
        blocks.append({"toolUse": {"toolUseId": _tool_id(tc.id), "name": tc.name, "input": tc.arguments}})
    return blocks


async def _fetch_images(call: Call, fetches: list[Fetch]) -> None:
    """Fetch the request's image URLs at once, after the whole request was checked."""
    if not fetches:
        return
    if call.media is None:
        raise invalid("this gateway does not fetch image URLs.", fetches[0][2], "invalid_image_url")
    if len(fetches) > MAX_FETCHED_IMAGES:
        raise invalid(
            f"at most {MAX_FETCHED_IMAGES} image URLs per request can be sent to Bedrock; send the rest inline.",
            fetches[MAX_FETCHED_IMAGES][2],
            "invalid_image_url",
        )
    fetched = await gather([call.media.fetch(url, param) for _, url, param in fetches])
    for (block, _, param), item in zip(fetches, fetched, strict=True):
        block.update(_image(item.mime, item.data, param))


# --- reply ---------------------------------------------------------------------------------


def usage_of(usage: Mapping[str, Any]) -> Usage:
    """Bedrock counts fresh, cache-read and cache-written input apart (as Anthropic does);
    OpenAI's prompt tokens are all of them, with the cached part in the details."""
    fresh = common.count(usage.get("inputTokens"))
    read = common.count(usage.get("cacheReadInputTokens"))
    write = common.count(usage.get("cacheWriteInputTokens"))
    return Usage(
        prompt_tokens=fresh + read + write,
        completion_tokens=common.count(usage.get("outputTokens")),
        cached_tokens=read,
        cache_write_tokens=write,
    )


def to_openai(reply: dict[str, Any], model: str) -> tuple[bytes, Usage]:
    usage = usage_of(reply["usage"])
    return openai_chat.completion(answer_of(reply), model, usage), usage


def answer_of(reply: dict[str, Any]) -> Answer:
    """A Converse reply (checked by bedrock_replies.REPLY) read: text, tool uses, reasoning
    with its signature (or redacted)."""
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[Thinking] = []
    calls: list[ToolCall] = []
    for block in reply["output"]["message"]["content"]:
        if block.get("text") is not None:
            text.append(str(block["text"]))
        elif block.get("toolUse") is not None:
            use = block["toolUse"]
            calls.append(ToolCall(id=use["toolUseId"], name=use["name"], arguments=use.get("input") or {}))
        elif block.get("reasoningContent") is not None:
            content = block["reasoningContent"]
            if content.get("reasoningText") is not None:
                thought = content["reasoningText"]
                reasoning.append(str(thought.get("text") or ""))
                if thought.get("signature"):
                    signature = thought["signature"]
                    thinking.append(Thinking(kind="thinking", text=thought.get("text") or "", signature=signature))
            elif content.get("redactedContent") is not None:
                thinking.append(Thinking(kind="redacted_thinking", data=content["redactedContent"]))
    turn = Assistant(text="".join(text), tool_calls=calls, thinking=thinking, reasoning="".join(reasoning))
    finish = FINISH.get(str(reply["stopReason"]), "stop")
    return Answer(id="chatcmpl-bedrock", choices=[Choice(message=turn, finish=finish)])


def error_from(status: int, raw: bytes, provider: str, headers: Mapping[str, str]) -> GatewayError:
    message = ""
    try:
        body = json.loads(raw)
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("Message") or "")
    except ValueError:
        pass
    kind = headers.get("x-amzn-errortype", "").split(":")[0]
    return common.provider_error(status, message, provider, headers, code=kind or None)


# --- stream --------------------------------------------------------------------------------


async def frames(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """AWS event-stream frames as the relay takes events: one JSON object each,
    ``{"type": <:event-type>, **payload}`` (an exception as ``{"type": "exception", ...}``)."""
    from botocore.eventstream import EventStreamBuffer, ParserError

    buffer = EventStreamBuffer()
    async for chunk in chunks:
        buffer.add_data(chunk)
        try:
            for message in buffer:
                headers = message.headers
                payload = json.loads(message.payload or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError("Bedrock sent an event whose payload is not a JSON object")
                kind = headers.get(":message-type")
                if kind == "event":
                    yield json.dumps({**payload, "type": headers.get(":event-type")}).encode()
                else:
                    found = headers.get(":exception-type") or headers.get(":error-code") or "internalServerException"
                    message_text = payload.get("message") or headers.get(":error-message") or ""
                    yield json.dumps({"type": "exception", "exceptionType": found, "message": message_text}).encode()
        except ParserError as exc:
            raise ValueError(f"Bedrock sent a malformed event frame ({type(exc).__name__})") from exc


class BedrockStream:
    """Converse stream events into OpenAI chunks: ``messageStart`` gives the role chunk; a
    block's deltas map by their kind (text to ``content``, reasoning to ``reasoning_content``
    and, when the block closes, a ``thinking_blocks`` delta with its signature, a tool use to
    a tool call whose ``index`` counts tool calls); ``messageStop`` gives the finish reason;
    ``metadata``, the last event, the usage."""

    schema: TypeAdapter[Any] | None = bedrock_replies.EVENT  # each event is checked before feed()

    def __init__(self, model: str, meter: StreamMeter, wants_usage: bool) -> None:
        self.out = ChunkWriter("chatcmpl-bedrock", model)
        self.meter = meter
        self.wants_usage = wants_usage
        self.finished = False
        self.usage: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.tool_count = 0
        self.started = False

    def feed(self, event: dict[str, Any], data: bytes = b"") -> list[bytes]:
        kind = event["type"]
        out: list[bytes] = []
        if not self.started:  # messageStart, or whatever came first
            self.started = True
            out.append(self.out.delta(0, {"role": "assistant", "content": ""}))
        if kind == "contentBlockStart":
            use = event["start"].get("toolUse")
            if use is not None:
                state = {"type": "tool", "tool_index": self.tool_count}
                self.blocks[event["contentBlockIndex"]] = state
                self.tool_count += 1
                self.meter.saw_content(len(use["name"]))
                call = {"index": state["tool_index"], "id": use["toolUseId"], "type": "function"}
                call["function"] = {"name": use["name"], "arguments": ""}
                out.append(self.out.delta(0, {"tool_calls": [call]}))
        elif kind == "contentBlockDelta":
            out += self._delta(event["contentBlockIndex"], event["delta"])
        elif kind == "contentBlockStop":
            stopped = self.blocks.get(event["contentBlockIndex"])
            if stopped is not None and stopped["type"] == "reasoning" and stopped.get("signature"):
                thought = "".join(stopped["text"])
                block = {"type": "thinking", "thinking": thought, "signature": stopped["signature"]}
                out.append(self.out.delta(0, {"thinking_blocks": [block]}))
            elif stopped is not None and stopped["type"] == "redacted":
                redacted = {"type": "redacted_thinking", "data": stopped["data"]}
                out.append(self.out.delta(0, {"thinking_blocks": [redacted]}))
        elif kind == "messageStop":
            finish = FINISH.get(str(event["stopReason"]), "stop")
            out.append(self.out.delta(0, {}, finish))
        elif kind == "metadata":
            self.usage = event["usage"]
            self.meter.usage = usage_of(event["usage"])
            self.finished = True
        elif kind == "exception":
            found = str(event["exceptionType"])
            status = _EXCEPTION_STATUS.get(found, 502)
            raise common.provider_error(status, str(event.get("message") or found), "bedrock", {}, code=found)
        return out

    def _delta(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        if delta.get("text") is not None:
            text = str(delta["text"])
            self.meter.saw_content(len(text))
            return [self.out.delta(0, {"content": text})] if text else []
        if delta.get("toolUse") is not None:
            state = self.blocks.get(index)
            if state is None or state["type"] != "tool":
                return []
            partial = str(delta["toolUse"].get("input") or "")
            self.meter.saw_content(len(partial))
            call = {"index": state["tool_index"], "function": {"arguments": partial}}
            return [self.out.delta(0, {"tool_calls": [call]})] if partial else []
        reasoning = delta.get("reasoningContent")
        if reasoning is not None:
            state = self.blocks.setdefault(index, {"type": "reasoning", "text": [], "signature": ""})
            if reasoning.get("redactedContent") is not None:
                state.update(type="redacted", data=reasoning["redactedContent"])
                return []
            if reasoning.get("signature"):
                state["signature"] = state.get("signature", "") + str(reasoning["signature"])
            text = str(reasoning.get("text") or "")
            if text:
                state.setdefault("text", []).append(text)
                self.meter.saw_content(len(text))
                return [self.out.delta(0, {"reasoning_content": text})]
        return []

    def eof(self) -> None:
        pass  # a Converse stream ends with its metadata event; without it the stream was cut

    def close(self) -> list[bytes]:
        return self.out.end(usage_of(self.usage or {}) if self.wants_usage else None)


# --- authentication ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _session() -> botocore.session.Session:
    import botocore.session

    return botocore.session.get_session()


async def _credentials(call: Call) -> ReadOnlyCredentials | None:
    """SigV4 credentials: the provider key's access key, or the AWS credential chain; None
    for a Bedrock API key (a bearer token)."""
    from botocore.credentials import ReadOnlyCredentials

    secret = call.credential.secret if call.credential is not None else None
    if secret is not None:
        if ":" not in secret:
            return None
        parts = secret.split(":", 2)
        return ReadOnlyCredentials(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    # The chain may read files or ask the instance metadata service: off the event loop.
    found = await asyncio.to_thread(lambda: _session().get_credentials())
    frozen = await asyncio.to_thread(found.get_frozen_credentials) if found is not None else None
    if frozen is None or not frozen.access_key:
        raise GatewayError(
            NO_PROVIDER_KEY,
            f"No credentials for provider {call.route.provider!r}: add a Bedrock API key or an access key "
            "(POST /ai/providers/keys), or give the edges AWS credentials (environment, shared files, roles).",
        )
    return frozen


async def signed(call: Call, url: str, payload: bytes) -> tuple[URL, dict[str, str]]:
    """The URL (as signed, never re-encoded) and the headers of a request to Bedrock."""
    headers = {"content-type": "application/json", "accept": "application/json", "x-client-request-id": call.request_id}
    credentials = await _credentials(call)
    if credentials is None:
        assert call.credential is not None
        headers["authorization"] = f"Bearer {call.credential.secret}"
        return URL(url, encoded=True), headers
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=payload, headers=headers)
    aws = Credentials(credentials.access_key, credentials.secret_key, credentials.token)
    SigV4Auth(aws, SERVICE, call.provider.location or DEFAULT_REGION).add_auth(request)
    return URL(url, encoded=True), dict(request.headers.items())


# --- adapter -------------------------------------------------------------------------------


def _url(call: Call, action: str) -> str:
    base = call.provider.base_url.replace("{region}", call.provider.location or DEFAULT_REGION).rstrip("/")
    return f"{base}/model/{quote(call.route.upstream_model, safe='')}/{action}"


class BedrockAdapter:
    async def chat(self, call: Call) -> Completion:
        body, fetches = to_converse(call)
        await _fetch_images(call, fetches)
        provider = call.route.provider
        payload = json.dumps(body).encode()
        url, headers = await signed(call, _url(call, "converse"), payload)
        raw, upstream_ms = await post_json(call, url, payload, headers, lambda s, r, h: error_from(s, r, provider, h))
        reply = common.parse_json_reply(raw, provider)
        out, usage = read_reply(provider, bedrock_replies.REPLY, reply, lambda: to_openai(reply, call.route.model))
        return Completion(body=out, usage=usage, upstream_ms=upstream_ms)

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        body, fetches = to_converse(call)
        await _fetch_images(call, fetches)
        provider = call.route.provider
        payload = json.dumps(body).encode()
        url, headers = await signed(call, _url(call, "converse-stream"), payload)
        resp = await open_stream(call, url, payload, headers, lambda s, r, h: error_from(s, r, provider, h))
        stream = BedrockStream(call.route.model, meter, call.wants_usage_chunk)
        return relay(call, resp, stream, meter, decode=frames)
