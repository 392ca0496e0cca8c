"""An Amazon Bedrock Runtime simulator: the Converse API (``POST /model/{modelId}/converse``)
and ConverseStream (``/converse-stream``, AWS event-stream frames), as AWS documents them.

Requests are authenticated the way AWS does it: a SigV4 signature recomputed here (botocore's
signer, with the secret of the access key named in the credential scope; a wrong signature is
a 403 ``InvalidSignatureException``, an unknown key ``UnrecognizedClientException``), or a
Bedrock API key as a bearer token. Bodies are checked (messages alternate and start with a
user turn, known block types, base64 bytes, tool results that answer the previous turn's tool
uses, the signature of a reasoning block handed back) and answered by the scripted model of
:mod:`tests.simulators.script`. Errors are ``{"message": ...}`` with ``x-amzn-ErrorType``.
``*-status-NNN`` answers that status; ``*-midstream-error`` ends a stream with an exception
frame, ``*-truncate`` mid-answer with nothing more. Every frame carries its CRCs, so the
official SDK (boto3) can read the stream.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.simulators import script
from tests.simulators.server import ProviderState, Recorded, ThreadedServer

REGION = "us-east-1"
ACCESS_KEY = "AKIASIMULATOR0000001"
SECRET_KEY = "sim/secret/key/for/sigv4/tests/0000000000"
API_KEY = "ABSKsimulatorbedrockapikey"
CACHE_READ = 2
ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})"
)


class Invalid(Exception):
    pass


def error(status: int, message: str, kind: str | None = None) -> web.Response:
    kind = kind or ERRORS.get(status, "InternalServerException")
    return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": f"{kind}:http://sim/"})


def frame(event: str, payload: dict[str, Any], message_type: str = "event") -> bytes:
    """One AWS event-stream message: prelude, its CRC, string headers, payload, message CRC."""
    kind_header = ":exception-type" if message_type == "exception" else ":event-type"
    headers = {kind_header: event, ":content-type": "application/json", ":message-type": message_type}
    encoded = b"".join(
        len(k).to_bytes(1, "big") + k.encode() + b"\x07" + len(v.encode()).to_bytes(2, "big") + v.encode()
        for k, v in headers.items()
    )
    body = json.dumps(payload).encode()
    total = 12 + len(encoded) + len(body) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    message = prelude + binascii.crc32(prelude).to_bytes(4, "big") + encoded + body
    return message + binascii.crc32(message).to_bytes(4, "big")


def _bytes(value: Any, where: str) -> int:
    if not isinstance(value, str):
        raise Invalid(f"{where}.source.bytes must be base64")
    try:
        return len(base64.b64decode(value, validate=True))
    except binascii.Error as exc:
        raise Invalid(f"{where}.source.bytes is not valid base64") from exc


def read_prompt(model: str, body: dict[str, Any]) -> script.Prompt:
    prompt = script.Prompt(model=model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("1 validation error detected: Value at 'messages' failed to satisfy constraint: non-empty")
    for item in body.get("system") or []:
        prompt.system = " ".join([prompt.system, str(item.get("text", ""))]).strip()
    thinking = ((body.get("additionalModelRequestFields") or {}).get("thinking") or {}).get("type") == "enabled"
    prompt.thinking = thinking
    pending: dict[str, str] = {}  # tool uses of the last assistant turn, by id
    for i, message in enumerate(messages):
        role = message.get("role")
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise Invalid("A conversation must alternate between user and assistant roles, starting with user.")
        blocks = message.get("content")
        if not isinstance(blocks, list) or not blocks:
            raise Invalid(f"messages.{i}.content must be a non-empty list")
        texts: list[str] = []
        results: list[tuple[str, str]] = []
        uses: dict[str, str] = {}
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            if "text" in block:
                texts.append(str(block["text"]))
            elif "image" in block and role == "user":
                image = block["image"]
                if image.get("format") not in ("png", "jpeg", "gif", "webp"):
                    raise Invalid(f"{where}.image.format is not one of png, jpeg, gif, webp")
                size = _bytes((image.get("source") or {}).get("bytes"), f"{where}.image")
                prompt.media.append(script.Media("image", f"image/{image['format']}", size))
            elif "document" in block and role == "user":
                doc = block["document"]
                if not re.fullmatch(r"[a-zA-Z0-9\-\(\)\[\]]+( [a-zA-Z0-9\-\(\)\[\]]+)*", str(doc.get("name", ""))):
                    raise Invalid(f"{where}.document.name has characters Bedrock does not allow")
                size = _bytes((doc.get("source") or {}).get("bytes"), f"{where}.document")
                prompt.media.append(script.Media("document", f"application/{doc.get('format')}", size))
            elif "toolUse" in block and role == "assistant":
                use = block["toolUse"]
                uses[str(use.get("toolUseId"))] = str(use.get("name"))
            elif "toolResult" in block and role == "user":
                result = block["toolResult"]
                use_id = str(result.get("toolUseId"))
                if use_id not in pending:
                    raise Invalid(f"{where}: toolResult {use_id} does not answer a toolUse of the previous turn")
                content = " ".join(str(c.get("text", "")) for c in result.get("content") or [])
                results.append((pending[use_id], content))
            elif "reasoningContent" in block and role == "assistant":
                text = block["reasoningContent"].get("reasoningText") or {}
                if not script.signature_ok(str(text.get("text", "")), text.get("signature")):
                    raise Invalid(f"{where}: the reasoning block's signature is not valid")
            else:
                raise Invalid(f"{where}: unsupported block {sorted(block)} in a {role} turn")
        if role == "user":
            prompt.tool_results = results
            if texts:
                prompt.user_texts.append(" ".join(texts))
            prompt.prompt_chars += sum(len(t) for t in texts)
        pending = uses
    config = body.get("toolConfig") or {}
    prompt.tools = [
        {"name": t["toolSpec"]["name"], "schema": (t["toolSpec"].get("inputSchema") or {}).get("json")}
        for t in config.get("tools") or []
    ]
    choice = config.get("toolChoice") or {}
    if "tool" in choice:
        prompt.tool_choice = ("function", str(choice["tool"].get("name")))
    inference = body.get("inferenceConfig") or {}
    prompt.stop = list(inference.get("stopSequences") or [])
    prompt.max_tokens = inference.get("maxTokens")
    return prompt


_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "content_filtered"}


def _stop_reason(cand: script.Candidate) -> str:
    return "stop_sequence" if cand.finish == "stop_sequence" else _STOP.get(cand.finish, "end_turn")


def _usage(reply: script.Answer) -> dict[str, int]:
    cand = reply.candidates[0]
    out = cand.output_tokens + cand.thinking_tokens
    return {
        "inputTokens": reply.prompt_tokens,
        "outputTokens": out,
        "totalTokens": reply.prompt_tokens + out + CACHE_READ,
        "cacheReadInputTokens": CACHE_READ,
        "cacheWriteInputTokens": 0,
    }


class BedrockSimulator(ThreadedServer):
    name = "bedrock-sim"

    def __init__(self) -> None:
        super().__init__()
        self.state = ProviderState()
        self.credentials: dict[str, tuple[str, str | None]] = {ACCESS_KEY: (SECRET_KEY, None)}
        self.api_keys: set[str] = {API_KEY}
        self.signed: list[str] = []  # the access key or "bearer" of each accepted request

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model_id}/converse", self.converse)
        app.router.add_post("/model/{model_id}/converse-stream", self.converse_stream)

    def _denied(self, request: web.Request, raw: bytes) -> web.Response | None:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if auth.removeprefix("Bearer ") not in self.api_keys:
                return error(403, "Invalid API Key format: Must start with pre-defined prefix", "AccessDeniedException")
            self.signed.append("bearer")
            return None
        found = _AUTH.fullmatch(auth)
        if found is None:
            return error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        key, _, region, service, signed_headers, signature = found.groups()
        if key not in self.credentials:
            return error(403, "The security token included in the request is invalid.", "UnrecognizedClientException")
        if (region, service) != (REGION, "bedrock"):
            return error(403, f"Credential should be scoped to a valid region and service ({region}/{service}).")
        secret, token = self.credentials[key]
        names = signed_headers.split(";")
        headers = {name: request.headers.get(name, "") for name in names}
        url = f"http://{request.headers.get('host')}{request.raw_path}"
        recomputed = AWSRequest(method=request.method, url=url, data=raw, headers=headers)
        recomputed.context["timestamp"] = request.headers.get("x-amz-date", "")
        signer = SigV4Auth(Credentials(key, secret, token), "bedrock", REGION)
        canonical = signer.canonical_request(recomputed)
        expected = signer.signature(signer.string_to_sign(recomputed, canonical), recomputed)
        if expected != signature:
            return error(
                403,
                "The request signature we calculated does not match the signature you provided.",
                "InvalidSignatureException",
            )
        self.signed.append(key)
        return None

    async def _read(self, request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
        raw = await request.read()
        denied = self._denied(request, raw)
        if denied is not None:
            return denied
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "Malformed input request, please reformat your input and try again.")
        model = unquote(request.match_info["model_id"])
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        status = re.search(r"-status-(\d{3})$", model)
        if status:
            return error(int(status.group(1)), f"simulated {status.group(1)}")
        return model, body

    def _content(self, cand: script.Candidate) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if cand.thinking:
            blocks.append(
                {
                    "reasoningContent": {
                        "reasoningText": {"text": cand.thinking, "signature": script.sign(cand.thinking)}
                    }
                }
            )
        if cand.text or not cand.tool_calls:
            blocks.append({"text": cand.text})
        for call in cand.tool_calls:
            blocks.append({"toolUse": {"toolUseId": f"tooluse_{call.id}", "name": call.name, "input": call.args}})
        return blocks

    async def converse(self, request: web.Request) -> web.Response:
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        model, body = read
        try:
            reply = script.answer(read_prompt(model, body))
        except Invalid as exc:
            return error(400, str(exc))
        cand = reply.candidates[0]
        return web.json_response(
            {
                "output": {"message": {"role": "assistant", "content": self._content(cand)}},
                "stopReason": _stop_reason(cand),
                "usage": _usage(reply),
                "metrics": {"latencyMs": 7},
            }
        )

    async def converse_stream(self, request: web.Request) -> web.StreamResponse:
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        model, body = read
        try:
            reply = script.answer(read_prompt(model, body))
        except Invalid as exc:
            return error(400, str(exc))
        cand = reply.candidates[0]
        resp = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)

        async def send(event: str, payload: dict[str, Any]) -> None:
            await resp.write(frame(event, payload))

        await send("messageStart", {"role": "assistant"})
        index = 0
        if cand.thinking:
            for piece in script.words(cand.thinking):
                await send(
                    "contentBlockDelta", {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": piece}}}
                )
            signature = {"reasoningContent": {"signature": script.sign(cand.thinking)}}
            await send("contentBlockDelta", {"contentBlockIndex": index, "delta": signature})
            await send("contentBlockStop", {"contentBlockIndex": index})
            index += 1
        if cand.text or not cand.tool_calls:
            for n, piece in enumerate(script.words(cand.text)):
                await send("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})
                if model.endswith("-truncate") and n == 1:
                    return resp  # the connection ends mid-answer: no messageStop, no metadata
                if model.endswith("-midstream-error") and n == 1:
                    await resp.write(
                        frame("modelStreamErrorException", {"message": "simulated model error"}, "exception")
                    )
                    return resp
            await send("contentBlockStop", {"contentBlockIndex": index})
            index += 1
        for call in cand.tool_calls:
            start = {"toolUse": {"toolUseId": f"tooluse_{call.id}", "name": call.name}}
            await send("contentBlockStart", {"contentBlockIndex": index, "start": start})
            args = json.dumps(call.args)
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                await send("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}})
            await send("contentBlockStop", {"contentBlockIndex": index})
            index += 1
        await send("messageStop", {"stopReason": _stop_reason(cand)})
        await send("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 7}})
        return resp
