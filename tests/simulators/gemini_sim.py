"""A Gemini API simulator (``generateContent``, ``streamGenerateContent?alt=sse``,
``embedContent``, ``batchEmbedContents`` under ``/v1beta/models/``), as Google documents it;
also as Vertex AI serves it (``/v1/projects/{p}/locations/{l}/publishers/google/models/``),
with service accounts whose signed JWTs its ``/token`` endpoint trades for access tokens.

Requests are checked the way the API checks them: the key in ``x-goog-api-key`` (a bad key is
a 400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``, as Gemini does), known fields only
(an unknown field such as ``additionalProperties`` in a schema is a 400), roles ``user`` and
``model``, valid base64, as many function responses as the function-call turn had calls, and
the thought signature on the first function call of each model turn of the current turn.
Answers come from :mod:`tests.simulators.script`; streams are ``data:`` chunks, each a whole
``GenerateContentResponse``, ended by the body ending (no end event), with ``\\r\\n``
line ends as Google's servers send them. Errors are ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import uuid
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as google_exceptions
from google.auth import jwt as google_jwt

from tests.simulators import script
from tests.simulators.server import LongStream, ProviderState, Recorded, ThreadedServer

CACHED = 5
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
SCHEMA_FIELDS = {
    "type", "format", "title", "description", "nullable", "enum", "items", "minItems", "maxItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "minimum", "maximum",
    "anyOf", "propertyOrdering", "default", "example",
}  # fmt: skip
SCHEMA_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
CONFIG_FIELDS = {
    "temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "seed", "presencePenalty",
    "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema", "responseLogprobs", "logprobs",
    "thinkingConfig", "mediaResolution",
}  # fmt: skip


class Invalid(Exception):
    pass


def error(status: int, message: str, reason: str | None = None) -> web.Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if reason:
        err["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
        ]
    headers = {"retry-after": "7"} if status == 429 else {}
    return web.json_response({"error": err}, status=status, headers=headers)


_OPAQUE = {"properties", "args", "response", "default", "example", "enum"}


def camel(node: Any) -> Any:
    """Proto3 JSON accepts a field's original snake_case name as well as its lowerCamelCase
    JSON name (the google-genai SDK sends some of each): read both as camelCase. Maps whose
    keys are the caller's own names (schema properties, function arguments) are left alone."""
    if isinstance(node, list):
        return [camel(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        name = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        if name in _OPAQUE and isinstance(value, dict):
            out[name] = {k: camel(v) for k, v in value.items()} if name == "properties" else value
        else:
            out[name] = camel(value)
    return out


SKIP_SIGNATURES = ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go")


def check_schema(node: Any, where: str) -> None:
    if not isinstance(node, dict):
        raise Invalid(f"Invalid JSON payload received. {where} must be an object")
    for key, value in node.items():
        if key not in SCHEMA_FIELDS:
            raise Invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.")
        if key == "type" and str(value).upper() not in SCHEMA_TYPES:
            raise Invalid(f"Invalid value at '{where}.type': {value!r}")
        if key == "properties":
            for name, sub in value.items():
                check_schema(sub, f"{where}.properties[{name}]")
        if key == "items":
            check_schema(value, f"{where}.items")
        if key == "anyOf":
            for k, sub in enumerate(value):
                check_schema(sub, f"{where}.any_of[{k}]")


def _b64(data: Any, where: str) -> int:
    try:
        return len(base64.b64decode(str(data), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise Invalid(f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed") from exc


def read_prompt(model: str, body: dict[str, Any]) -> script.Prompt:
    known = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings"}
    for key in body:
        if key not in known:
            raise Invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    prompt = script.Prompt(model=model)
    system = body.get("systemInstruction")
    if system:
        prompt.system = " ".join(p.get("text", "") for p in system.get("parts") or [])
        prompt.prompt_chars += len(prompt.system)
    config = body.get("generationConfig") or {}
    for key in config:
        if key not in CONFIG_FIELDS:
            raise Invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config'.")
    if "responseSchema" in config:
        check_schema(config["responseSchema"], "generation_config.response_schema")
        prompt.json_schema = config["responseSchema"]
    prompt.json_mode = config.get("responseMimeType") == "application/json"
    prompt.thinking = bool((config.get("thinkingConfig") or {}).get("includeThoughts"))
    prompt.stop = list(config.get("stopSequences") or [])
    prompt.n = int(config.get("candidateCount") or 1)
    if "maxOutputTokens" in config:
        prompt.max_tokens = int(config["maxOutputTokens"])
    for tool in body.get("tools") or []:
        for decl in tool.get("functionDeclarations") or []:
            if "parameters" in decl:
                check_schema(decl["parameters"], f"tools.function_declarations[{decl.get('name')}].parameters")
            prompt.tools.append({"name": decl["name"], "schema": decl.get("parameters")})
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
    allowed = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("allowedFunctionNames")
    prompt.tool_choice = {"AUTO": "auto", "ANY": "required", "NONE": "none"}[mode]
    if mode == "ANY" and allowed and len(allowed) == 1:
        prompt.tool_choice = ("function", allowed[0])

    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    current_turn_start = 0
    for i, content in enumerate(contents):
        if content.get("role") == "user" and any("text" in p for p in content.get("parts") or []):
            current_turn_start = i
    calls_in_previous = 0
    for i, content in enumerate(contents):
        role = content.get("role")
        if role not in ("user", "model"):
            raise Invalid(f"Please use a valid role: user, model. (contents[{i}].role={role!r})")
        parts = content.get("parts")
        if not parts:
            raise Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        texts: list[str] = []
        responses: list[tuple[str, str]] = []
        calls = 0
        for j, part in enumerate(parts):
            where = f"contents[{i}].parts[{j}]"
            if "text" in part:
                if role == "user":
                    texts.append(part["text"])
                prompt.prompt_chars += len(part["text"])
            elif "inlineData" in part:
                data = part["inlineData"]
                mime = str(data.get("mimeType") or "")
                if not mime:
                    raise Invalid(f"{where}.inline_data.mime_type is required")
                kind = mime.split("/")[0] if mime.split("/")[0] in ("image", "audio", "video") else "document"
                prompt.media.append(script.Media(kind, mime, _b64(data.get("data"), f"{where}.inline_data.data")))
            elif "fileData" in part:
                data = part["fileData"]
                mime, uri = str(data.get("mimeType") or ""), str(data.get("fileUri") or "")
                if not mime or not uri:
                    raise Invalid(f"{where}.file_data needs mime_type and file_uri")
                kind = mime.split("/")[0] if mime.split("/")[0] in ("image", "audio", "video") else "document"
                prompt.media.append(script.Media(kind, mime, 0, url=uri))
            elif "functionCall" in part and role == "model":
                if calls == 0 and i > current_turn_start:
                    sig = part.get("thoughtSignature")
                    # Google's documented sentinels for calls the model did not make pass.
                    if sig not in SKIP_SIGNATURES and not script.signature_ok(
                        part["functionCall"].get("name", ""), sig
                    ):
                        raise Invalid(
                            f"Function call is missing a thought_signature in functionCall parts. This is required "
                            f"for tools to work correctly, and missing thought_signature may lead to degraded model "
                            f"performance. Additional data, function call `{part['functionCall'].get('name')}`, "
                            f"position {i}."
                        )
                calls += 1
            elif "functionResponse" in part and role == "user":
                fr = part["functionResponse"]
                if not isinstance(fr.get("response"), dict):
                    raise Invalid(f"{where}.function_response.response must be an object")
                responses.append((str(fr.get("name")), json.dumps(fr["response"])))
            else:
                raise Invalid(f"{where}: unsupported part {sorted(part)} in a {role} turn")
        if responses and len(responses) != calls_in_previous:
            raise Invalid(
                "Please ensure that the number of function response parts is equal to the number of function call "
                "parts of the function call turn."
            )
        if role == "user":
            if texts:
                prompt.user_texts.append(" ".join(texts))
            prompt.tool_results = responses
        calls_in_previous = calls
    return prompt


def _finish(cand: script.Candidate) -> str:
    return {"stop": "STOP", "stop_sequence": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}.get(
        cand.finish, "SAFETY"
    )


def _parts(cand: script.Candidate) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if cand.thinking:
        parts.append({"text": cand.thinking, "thought": True})
    for k, call in enumerate(cand.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.args}}
        if k == 0:
            part["thoughtSignature"] = script.sign(call.name)
        parts.append(part)
    if cand.text and not cand.tool_calls:
        parts.append({"text": cand.text, "thoughtSignature": script.sign(cand.text)})
    return parts


def _logprobs(text: str) -> dict[str, Any]:
    tokens = script.words(text)
    return {
        "topCandidates": [
            {"candidates": [{"token": t, "logProbability": -0.25}, {"token": t.upper(), "logProbability": -1.5}]}
            for t in tokens
        ],
        "chosenCandidates": [{"token": t, "logProbability": -0.25} for t in tokens],
    }


def usage(reply: script.Answer) -> dict[str, Any]:
    out = sum(c.output_tokens for c in reply.candidates)
    thoughts = sum(c.thinking_tokens for c in reply.candidates)
    meta = {
        "promptTokenCount": reply.prompt_tokens,
        "candidatesTokenCount": out,
        "totalTokenCount": reply.prompt_tokens + out + thoughts,
        "cachedContentTokenCount": CACHED,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}],
    }
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta


def vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[k % 32] - 128) / 128, 6) for k in range(dims)]


class GeminiSimulator(ThreadedServer):
    name = "gemini-sim"

    def __init__(self) -> None:
        super().__init__()
        self.state = ProviderState()
        self.accounts: dict[str, str] = {}  # service account email -> its public key (PEM)
        self.tokens: dict[str, str] = {}  # access token -> the service account it was issued to
        self.token_requests = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{model_method}", self.dispatch)
        # Vertex AI: the same API under a project and location, with OAuth access tokens.
        vertex = "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model_method}"
        app.router.add_post(vertex, self.vertex_dispatch)
        app.router.add_post("/token", self.token)

    def service_account(self, project: str = "proj-sim") -> dict[str, str]:
        """A new service account's JSON key, whose tokens this simulator issues at /token."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = uuid.uuid4().hex
        email = f"sa-{key_id[:8]}@{project}.iam.gserviceaccount.com"
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.accounts[email] = public.decode()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": private.decode(),
            "client_email": email,
            "client_id": "1",
            "token_uri": f"{self.origin}/token",
        }

    async def token(self, request: web.Request) -> web.Response:
        """Google's OAuth token endpoint for a service account's signed JWT (RFC 7523)."""
        form = await request.post()
        self.token_requests += 1
        assertion = str(form.get("assertion") or "")
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not assertion:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            unverified = google_jwt.decode(assertion, verify=False)
            public = self.accounts[str(unverified.get("iss"))]
            # Google's token endpoint takes its own URL as the audience, wherever token_uri points.
            claims = google_jwt.decode(assertion, certs=public, audience=GOOGLE_TOKEN_AUDIENCE)
        except (KeyError, ValueError, google_exceptions.GoogleAuthError):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
            )
        if "https://www.googleapis.com/auth/cloud-platform" not in str(claims.get("scope", "")).split():
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = "ya29.sim-" + uuid.uuid4().hex
        self.tokens[token] = str(claims["iss"])
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    async def vertex_dispatch(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        email = self.tokens.get(token)
        if email is None:
            return error(
                401, "Request had invalid authentication credentials. Expected OAuth 2 access token.", "UNAUTHENTICATED"
            )
        if request.match_info["version"] not in ("v1", "v1beta1"):
            return error(404, f"API version {request.match_info['version']} not found")
        if request.match_info["project"] != email.split("@")[1].split(".")[0]:
            return error(403, f"Permission denied on resource project {request.match_info['project']}.")
        return await self._serve(request)

    def _key_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if not key:
            return error(403, "Method doesn't allow unregistered callers (callers without established identity).")
        if key.startswith("sk-invalid"):
            return error(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
        if key.startswith("sk-ratelimited"):
            return error(429, "Resource has been exhausted (e.g. check quota).")
        return None

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        refused = self._key_error(request)
        if refused is not None:
            return refused
        return await self._serve(request)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["model_method"].partition(":")
        try:
            body = camel(await request.json())
        except ValueError:
            return error(400, "Invalid JSON payload received.")
        self.state.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        status = re.search(r"-status-(\d{3})$", model)
        if status:
            return error(int(status.group(1)), f"simulated {status.group(1)}")
        if model.endswith("-slow"):
            await asyncio.sleep(self.state.slow_seconds)
        try:
            if method == "embedContent":
                return self._embed([body], single=True)
            if method == "batchEmbedContents":
                if len(body.get("requests") or []) > 100:
                    raise Invalid("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch.")
                return self._embed(body.get("requests") or [], single=False)
            prompt = read_prompt(model, body)
        except Invalid as exc:
            return error(400, str(exc))
        reply = script.answer(prompt, id_prefix="fc")
        logprobs = bool((body.get("generationConfig") or {}).get("responseLogprobs"))
        if method == "streamGenerateContent":
            if request.query.get("alt") != "sse":
                return error(400, "this simulator streams with alt=sse only")
            return await self._stream(request, model, reply, logprobs)
        if method != "generateContent":
            return error(404, f"method {method} not found")
        candidates = []
        for k, cand in enumerate(reply.candidates):
            item: dict[str, Any] = {
                "content": {"role": "model", "parts": _parts(cand)},
                "finishReason": _finish(cand),
                "index": k,
            }
            if logprobs:
                item["logprobsResult"] = _logprobs(cand.text)
            candidates.append(item)
        return web.json_response(
            {
                "candidates": candidates,
                "usageMetadata": usage(reply),
                "modelVersion": model,
                "responseId": uuid.uuid4().hex[:22],
            }
        )

    def _embed(self, requests: list[dict[str, Any]], single: bool) -> web.Response:
        vectors = []
        for k, req in enumerate(requests):
            parts = (req.get("content") or {}).get("parts") or []
            if not parts or not all("text" in p for p in parts):
                raise Invalid(f"requests[{k}].content must hold text parts")
            dims = int(req.get("outputDimensionality") or 768)
            vectors.append({"values": vector(" ".join(p["text"] for p in parts), dims)})
        if single:
            return web.json_response({"embedding": vectors[0]})
        return web.json_response({"embeddings": vectors})

    async def _stream(
        self, request: web.Request, model: str, reply: script.Answer, logprobs: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        response_id = uuid.uuid4().hex[:22]

        async def send(candidates: list[dict[str, Any]], final: bool = False) -> None:
            payload: dict[str, Any] = {"candidates": candidates, "modelVersion": model, "responseId": response_id}
            meta = usage(reply)
            if not final:  # Google sends running counts on every chunk; the last one is complete
                meta = {"promptTokenCount": reply.prompt_tokens, "totalTokenCount": reply.prompt_tokens}
            payload["usageMetadata"] = meta
            await resp.write(b"data: " + json.dumps(payload).encode() + b"\r\n\r\n")

        if model.endswith("-long"):
            log = LongStream()
            self.state.long_streams.append(log)

            async def word(i: int) -> None:
                await send([{"content": {"role": "model", "parts": [{"text": f"{i:03d} "}]}, "index": 0}])

            await log.run(word)
            return resp
        for k, cand in enumerate(reply.candidates):
            if cand.thinking:
                await send(
                    [{"content": {"role": "model", "parts": [{"text": cand.thinking, "thought": True}]}, "index": k}]
                )
            for part in _parts(cand):
                if "functionCall" in part:
                    await send([{"content": {"role": "model", "parts": [part]}, "index": k}])
        for k, cand in enumerate(reply.candidates):
            if cand.tool_calls:
                continue
            pieces = script.words(cand.text)
            for w, piece in enumerate(pieces):
                part: dict[str, Any] = {"text": piece}
                if w == len(pieces) - 1:
                    part["thoughtSignature"] = script.sign(cand.text)
                item: dict[str, Any] = {"content": {"role": "model", "parts": [part]}, "index": k}
                if logprobs:
                    item["logprobsResult"] = _logprobs(piece)
                await send([item])
                if w == 1 and model.endswith("-midstream-error"):
                    err = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
                    await resp.write(b"data: " + json.dumps(err).encode() + b"\r\n\r\n")
                    return resp
                if w == 1 and model.endswith("-truncate"):
                    return resp
        final = [
            {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": _finish(c), "index": k}
            for k, c in enumerate(reply.candidates)
        ]
        await send(final, final=True)
        return resp
