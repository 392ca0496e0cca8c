"""A conversation's answer written as OpenAI's chat completion, the shape every client of
``/v1/chat/completions`` reads (and the Responses and Messages APIs translate from): one
place decides how an assistant turn looks, whichever provider gave it.

Streams are written chunk by chunk by each provider's stream translator with
:class:`~services.edge.providers.common.ChunkWriter` (the per-chunk CPU goal of
docs/performance.md); they carry the same fields.
"""

from __future__ import annotations

import json
from typing import Any

from services.edge.canonical.model import Answer, Assistant, ToolCall
from services.edge.providers import common
from services.edge.providers.base import Usage


def completion(answer: Answer, model: str, usage: Usage) -> bytes:
    choices = [
        {"index": c.index, "message": message(c.message), "logprobs": c.logprobs, "finish_reason": c.finish}
        for c in answer.choices
    ]
    return common.completion_json(answer.id, model, choices, common.usage_json(usage))


def message(turn: Assistant) -> dict[str, Any]:
    """An assistant turn as OpenAI's message: ``content`` (null beside tool calls when there is
    no text), ``reasoning_content``, ``thinking_blocks`` with their signatures, ``tool_calls``
    and Gemini's ``extra_content``, each only when there is something in it."""
    out: dict[str, Any] = {"role": "assistant", "content": turn.text if turn.text or not turn.tool_calls else None}
    out["refusal"] = None
    if turn.reasoning:
        out["reasoning_content"] = turn.reasoning
    if turn.thinking:
        out["thinking_blocks"] = [
            {"type": "thinking", "thinking": t.text, "signature": t.signature or ""}
            if t.kind == "thinking"
            else {"type": "redacted_thinking", "data": t.data or ""}
            for t in turn.thinking
        ]
    if turn.tool_calls:
        out["tool_calls"] = [tool_call(call) for call in turn.tool_calls]
    if turn.extra_content:
        out["extra_content"] = turn.extra_content
    return out


def tool_call(call: ToolCall) -> dict[str, Any]:
    arguments = call.raw_arguments if call.raw_arguments is not None else json.dumps(call.arguments)
    out: dict[str, Any] = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}
    if call.extra_content:
        out["extra_content"] = call.extra_content
    return out
