"""The built-in ``echo`` provider: answers with the last user message, streamed word by word.

It lets a fresh install be tried end to end (auth, routing, streaming, metering) before any
provider account exists. Token counts are whitespace-separated words.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from services.edge.providers.base import Call, Completion, StreamMeter, Usage
from services.edge.sse import DONE, frame

_WORDS = re.compile(r"\S+\s*")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _reply_and_usage(body: dict[str, Any]) -> tuple[str, Usage]:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    reply = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    prompt = sum(len(_text(m.get("content")).split()) for m in messages)
    return reply, Usage(prompt_tokens=prompt, completion_tokens=len(reply.split()))


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


class EchoAdapter:
    async def chat(self, call: Call) -> Completion:
        reply, usage = _reply_and_usage(call.body)
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.route.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage_json(usage),
        }
        return Completion(body=json.dumps(body).encode(), usage=usage, upstream_ms=0.0)

    async def stream(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        return self._events(call, meter)

    async def _events(self, call: Call, meter: StreamMeter) -> AsyncIterator[bytes]:
        reply, usage = _reply_and_usage(call.body)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.route.model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return frame(json.dumps(dict(base, choices=[choice])).encode())

        yield chunk({"role": "assistant", "content": ""})
        for word in _WORDS.findall(reply):
            meter.saw_content(len(word))
            yield chunk({"content": word})
        yield chunk({}, "stop")
        meter.usage = usage
        if call.wants_usage_chunk:
            yield frame(json.dumps(dict(base, choices=[], usage=_usage_json(usage))).encode())
        meter.finished = True
        meter.upstream_done_at = time.perf_counter()
        yield DONE
