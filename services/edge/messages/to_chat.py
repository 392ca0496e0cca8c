"""A Messages API request as a chat completions request, for a model served by a provider
other than Anthropic: the form every provider adapter takes.

A user turn's ``tool_result`` blocks become ``tool`` messages (first, as chat wants them
right after the assistant's calls) and its other blocks one user message; an assistant
turn's text, ``tool_use`` and thinking blocks become one assistant message. ``system`` is the
system message. ``thinking`` becomes a reasoning effort by its budget.
"""

from __future__ import annotations

import json
from typing import Any

from services.edge.messages import tool_ids
from services.edge.messages.blocks import (
    Document,
    Image,
    Message,
    MessagesRequest,
    RedactedThinking,
    Text,
    TextSource,
    Thinking,
    ToolResult,
    ToolUse,
    UrlSource,
)
from shared.errors import UNSUPPORTED, GatewayError


def chat_body(request: MessagesRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        system = request.system if isinstance(request.system, str) else "\n\n".join(b.text for b in request.system)
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(request.messages):
        messages.extend(_turn(message, f"messages.{i}"))
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_completion_tokens": request.max_tokens,
        "stream": request.stream,
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.top_k is not None:
        # Not a chat parameter: the translating adapters refuse it by name (or drop it on
        # request); an OpenAI-compatible server (vLLM takes it) answers for itself.
        body["top_k"] = request.top_k
    if request.metadata is not None and request.metadata.user_id:
        body["user"] = request.metadata.user_id
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": t.input_schema,
                },
            }
            for t in request.tools
        ]
    choice = request.tool_choice
    if choice is not None and (request.tools or choice.type == "none"):
        if choice.type == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name or ""}}
        else:
            body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
        if choice.disable_parallel_tool_use:
            body["parallel_tool_calls"] = False
    if request.thinks:
        budget = request.thinking.budget_tokens if request.thinking is not None else None
        body["reasoning_effort"] = _effort(budget)
    return body


def _effort(budget: int | None) -> str:
    """A thinking budget as the effort the chat adapters take (each provider's own budget
    for that effort; docs/compatibility.md)."""
    if budget is None:
        return "medium"
    if budget <= 2048:
        return "low"
    return "medium" if budget <= 8192 else "high"


def _turn(message: Message, where: str) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        return [_assistant(message, where)]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if isinstance(block, ToolResult):
            tools.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _result(block, where)})
        elif isinstance(block, Thinking | RedactedThinking | ToolUse):
            raise GatewayError(
                UNSUPPORTED, f"{where}.content.{j}: a user turn cannot hold {block.type} blocks.", param=where
            )
        else:
            parts.append(_part(block, f"{where}.content.{j}"))
    out = list(tools)
    if parts:
        text_only = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if text_only else parts})
    return out


def _assistant(message: Message, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": None}
    texts: list[str] = []
    for j, block in enumerate(message.content if isinstance(message.content, list) else []):
        if isinstance(block, Text):
            texts.append(block.text)
        elif isinstance(block, ToolUse):
            call: dict[str, Any] = {
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": json.dumps(block.input)},
            }
            extra = tool_ids.signature_of(block.id)
            if extra is not None:
                call["extra_content"] = extra
            out.setdefault("tool_calls", []).append(call)
        elif isinstance(block, Thinking):
            if block.signature:
                entry = {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
                out.setdefault("thinking_blocks", []).append(entry)
        elif isinstance(block, RedactedThinking):
            out.setdefault("thinking_blocks", []).append({"type": "redacted_thinking", "data": block.data})
        else:
            raise GatewayError(
                UNSUPPORTED,
                f"{where}.content.{j}: an assistant turn cannot hold {block.type} blocks.",
                param=f"{where}.content.{j}",
            )
    if texts:
        out["content"] = "".join(texts)
    return out


def _part(block: Any, where: str) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Image):
        source = block.source
        url = source.url if isinstance(source, UrlSource) else f"data:{source.media_type};base64,{source.data}"
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(block, Document):
        doc = block.source
        if isinstance(doc, TextSource):
            return {"type": "text", "text": doc.data}
        if isinstance(doc, UrlSource):
            raise GatewayError(
                UNSUPPORTED,
                f"{where}: a document by URL cannot be translated for this model's provider; send it as base64.",
                param=f"{where}.source",
            )
        file: dict[str, Any] = {"file_data": f"data:{doc.media_type};base64,{doc.data}"}
        if block.title:
            file["filename"] = block.title
        return {"type": "file", "file": file}
    raise GatewayError(UNSUPPORTED, f"{where}: this block cannot be translated", param=where)


def _result(block: ToolResult, where: str) -> str | list[dict[str, Any]]:
    if isinstance(block.content, str):
        return block.content
    parts = [_part(b, f"{where}.content") for b in block.content]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts
