"""The scripted "model" behind the provider simulators.

Each simulator reads its own wire format into a :class:`Prompt`, asks :func:`answer` what a
model would say, and writes the :class:`Answer` back in its own wire format. The answer is a
function of the prompt, so tests can predict it exactly:

- the last turn holds tool results: text that quotes each result (``name=content``);
- tools are offered and ``tool_choice`` is not ``none``: a call to the named tool, or to
  every offered tool (parallel calls), with arguments built from each tool's schema;
- a JSON answer is asked for: an object that fits the schema (``{"answer": ...}`` without),
  also as the answer that follows tool results;
- otherwise: text that repeats the last user text and lists the media the prompt held.

Thinking, when asked for, comes first and is signed: the signature is an HMAC of the text (or
of the function name), so a simulator can check a signature that comes back on a later turn.
Stop sequences cut the text; a token limit cuts it and finishes with ``length``. Model-name
suffixes pick failures: ``-status-NNN``, ``-midstream-error``, ``-truncate``, ``-filtered``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

_SIGNING_KEY = b"switchyard-simulator-signing-key"
MEDIA_TOKENS = 258  # what an image or document counts for in the prompt
TEMPLATE_TOKENS = 3  # the chat template's own tokens, as real tokenizers add them


def sign(text: str) -> str:
    return base64.b64encode(hmac.new(_SIGNING_KEY, text.encode(), hashlib.sha256).digest()).decode()


def signature_ok(text: str, signature: Any) -> bool:
    """Whether ``signature`` signs ``text``; base64 in either alphabet, as proto3 JSON
    accepts both (the google-genai SDK sends URL-safe base64)."""
    if not isinstance(signature, str):
        return False
    try:
        given = base64.urlsafe_b64decode(signature.replace("+", "-").replace("/", "_"))
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64decode(sign(text)), given)


@dataclass
class Media:
    kind: str  # image, document, audio, video
    mime: str
    size: int  # bytes decoded, or 0 for a URL
    url: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.mime} {self.url or f'{self.size} bytes'}"


@dataclass
class Prompt:
    model: str
    system: str = ""
    user_texts: list[str] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    tool_results: list[tuple[str, str]] = field(default_factory=list)  # (name or id, content) of the last turn
    tools: list[dict[str, Any]] = field(default_factory=list)  # {name, schema}
    tool_choice: str | tuple[str, str] = "auto"
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False
    thinking: bool = False
    stop: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    n: int = 1
    prompt_chars: int = 0


@dataclass
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]


@dataclass
class Candidate:
    thinking: str = ""
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: str = "stop"  # stop, length, tool_calls, content_filter, stop_sequence

    @property
    def output_tokens(self) -> int:
        words = len(self.text.split()) + sum(len(json.dumps(c.args).split()) + 1 for c in self.tool_calls)
        return max(words, 1)

    @property
    def thinking_tokens(self) -> int:
        return len(self.thinking.split())


@dataclass
class Answer:
    candidates: list[Candidate]
    prompt_tokens: int


def example(schema: Any, name: str = "value", root: Any = None) -> Any:
    """A value that fits a JSON Schema (the subset tools and json_schema use)."""
    if not isinstance(schema, dict):
        return name
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = root
        for key in ref[2:].split("/"):
            target = target[key]
        return example(target, name, root)
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example(schema[key][0], name, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind or "object").lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: example(sub, key, root) for key, sub in props.items()}
    if kind == "array":
        return [example(schema.get("items") or {"type": "string"}, name, root)]
    if kind == "integer":
        return 3
    if kind == "number":
        return 21.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {"city": "Paris", "unit": "celsius", "location": "Paris"}.get(name, f"{name}-value")


def answer(prompt: Prompt, id_prefix: str = "call") -> Answer:
    prompt_tokens = max(1, prompt.prompt_chars // 4) + TEMPLATE_TOKENS + MEDIA_TOKENS * len(prompt.media)
    candidates = [_candidate(prompt, i, id_prefix) for i in range(max(prompt.n, 1))]
    return Answer(candidates=candidates, prompt_tokens=prompt_tokens)


def _candidate(prompt: Prompt, index: int, id_prefix: str) -> Candidate:
    last = prompt.user_texts[-1] if prompt.user_texts else ""
    cand = Candidate()
    if prompt.thinking:
        cand.thinking = f"Thinking about: {last}".strip()
    if prompt.model.endswith("-filtered"):
        cand.finish = "content_filter"
        return cand
    wants_json = prompt.json_schema is not None or prompt.json_mode
    if prompt.tool_results and not wants_json:
        cand.text = "Tool results: " + "; ".join(f"{name}={content}" for name, content in prompt.tool_results)
    elif prompt.tools and prompt.tool_choice != "none" and not prompt.tool_results:
        if isinstance(prompt.tool_choice, tuple):
            chosen = [t for t in prompt.tools if t["name"] == prompt.tool_choice[1]]
        else:
            chosen = prompt.tools
        for k, tool in enumerate(chosen):
            args = example(tool.get("schema") or {"type": "object"})
            cand.tool_calls.append(ToolCall(id=f"{id_prefix}_{index}_{k}_{tool['name']}", name=tool["name"], args=args))
        cand.finish = "tool_calls"
        return cand
    elif wants_json:  # the answer, also after tool results
        value = example(prompt.json_schema) if prompt.json_schema is not None else {"answer": last}
        cand.text = json.dumps(value)
    else:
        seen = "; ".join(m.describe() for m in prompt.media)
        cand.text = f"Reply {index} to: {last}" + (f" [saw {seen}]" if seen else "")
        if prompt.system:
            cand.text += f" [system: {prompt.system}]"
    for stop in prompt.stop:
        cut = cand.text.find(stop)
        if cut >= 0:
            cand.text = cand.text[:cut]
            cand.finish = "stop_sequence"
    if prompt.max_tokens is not None:
        words = cand.text.split(" ")
        if len(words) > prompt.max_tokens:
            cand.text = " ".join(words[: prompt.max_tokens])
            cand.finish = "length"
    return cand


def words(text: str) -> list[str]:
    """Text in stream-sized pieces (each keeps its trailing space)."""
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + [parts[-1]] if text else []


def decoded_size(data: str) -> int:
    return len(base64.b64decode(data, validate=True))
