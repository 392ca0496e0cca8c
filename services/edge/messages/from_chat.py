"""Chat completions back into the Messages API: a completion into a message, and chat
chunks into Anthropic's stream events (``message_start``, a ``content_block_start``/
``_delta``/``_stop`` run per block, ``message_delta`` with the stop reason and usage,
``message_stop``), the order the ``anthropic`` SDKs accumulate.

``stop_reason`` is ``tool_use`` whenever the model called a tool, whatever finish reason the
provider gave (some say ``stop`` with tool calls); ``length`` is ``max_tokens``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from services.edge.messages import tool_ids
from services.edge.messages.blocks import MessagesRequest
from services.edge.sse import DONE, json_data

log = logging.getLogger("switchyard.edge.messages")

Block = dict[str, Any]

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def new_id() -> str:
    return "msg_" + os.urandom(12).hex()


def stop_reason(finish: str | None, called: bool) -> str:
    if called:
        return "tool_use"
    return _STOP.get(finish or "stop", "end_turn")


def usage_of(chat_usage: Any) -> dict[str, int]:
    """Anthropic counts input without what was read from the cache."""
    usage = chat_usage if isinstance(chat_usage, dict) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "input_tokens": max(prompt - cached, 0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        log.warning("a tool call's arguments are not JSON; passed as {'arguments': <text>}")
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def message(request: MessagesRequest, completion: dict[str, Any]) -> dict[str, Any]:
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    content: list[Block] = []
    if request.thinks:
        signed = [b for b in msg.get("thinking_blocks") or [] if isinstance(b, dict)]
        if signed:
            content.extend(signed)
        elif msg.get("reasoning_content"):
            content.append({"type": "thinking", "thinking": str(msg["reasoning_content"]), "signature": ""})
    if msg.get("content"):
        content.append({"type": "text", "text": str(msg["content"])})
    calls = msg.get("tool_calls") or []
    for call in calls:
        fn = call.get("function") or {}
        call_id = tool_ids.with_signature(str(call.get("id")), call.get("extra_content"))
        content.append(
            {"type": "tool_use", "id": call_id, "name": str(fn.get("name")), "input": _input(fn.get("arguments") or "")}
        )
    return {
        "id": new_id(),
        "type": "message",
        "role": "assistant",
        "model": str(completion.get("model") or request.model),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), bool(calls)),
        "stop_sequence": None,
        "usage": usage_of(completion.get("usage")),
    }


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + json.dumps({"type": kind, **payload}).encode() + b"\n\n"


class StreamTranslator:
    """Chat chunks in, Anthropic stream events out."""

    def __init__(self, request: MessagesRequest, input_estimate: int) -> None:
        self.request = request
        self.input_estimate = input_estimate
        self.index = -1
        self.open: str | None = None  # the type of the block receiving deltas
        self.calls: dict[int, int] = {}  # chat tool-call index -> block index
        self.finish: str | None = None
        self.usage: Any = None
        self.model = request.model
        self.started = False

    async def translate(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for event in self._translate(chunks):
                yield event
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _translate(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            if chunk == DONE:
                for event in [*self._start(), *self._close()]:
                    yield event
                usage = usage_of(self.usage)
                reason = stop_reason(self.finish, bool(self.calls))
                yield _event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": usage})
                yield _event("message_stop", {})
                return
            data = json_data(chunk)
            if data is None:
                continue
            if "error" in data:
                err = data["error"] if isinstance(data["error"], dict) else {}
                kind = "overloaded_error" if err.get("code") == "overloaded" else "api_error"
                message = str(err.get("message") or "the provider's stream failed")
                yield _event("error", {"error": {"type": kind, "message": message}})
                return
            for event in self._chunk(data):
                yield event

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {
            "id": new_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
        }
        return [_event("message_start", {"message": message})]

    def _chunk(self, data: dict[str, Any]) -> list[bytes]:
        if data.get("model"):
            self.model = str(data["model"])
        out = self._start()
        if data.get("usage"):
            self.usage = data["usage"]
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content") and self.request.thinks:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": str(delta["reasoning_content"])}))
            for block in delta.get("thinking_blocks") or []:
                if isinstance(block, dict) and self.request.thinks:
                    if block.get("type") == "redacted_thinking":
                        out += self._close()
                        out += self._open("redacted_thinking", {"type": "redacted_thinking", "data": block.get("data")})
                        out += self._close()
                    elif block.get("signature"):
                        out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                        out.append(self._delta({"type": "signature_delta", "signature": str(block["signature"])}))
            if delta.get("content"):
                out += self._open("text", {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": str(delta["content"])}))
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
        return out

    def _open(self, kind: str, block: Block) -> list[bytes]:
        if self.open == kind and kind != "tool_use":
            return []
        out = self._close()
        self.index += 1
        self.open = kind
        out.append(_event("content_block_start", {"index": self.index, "content_block": block}))
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": self.index, "delta": delta})

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [_event("content_block_stop", {"index": self.index})]

    def _call(self, call: Any) -> list[bytes]:
        if not isinstance(call, dict):
            return []
        fn = call.get("function") or {}
        position = int(call.get("index") or 0)
        out: list[bytes] = []
        if position not in self.calls:
            call_id = tool_ids.with_signature(str(call.get("id") or new_id()), call.get("extra_content"))
            block = {"type": "tool_use", "id": call_id, "name": str(fn.get("name") or ""), "input": {}}
            out += self._open("tool_use", block)
            self.calls[position] = self.index
        args = fn.get("arguments")
        if args:
            out.append(
                _event(
                    "content_block_delta",
                    {"index": self.calls[position], "delta": {"type": "input_json_delta", "partial_json": str(args)}},
                )
            )
        return out
