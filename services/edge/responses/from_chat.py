"""Chat completions back into the Responses API: a completion into a response object, and a
stream of chat chunks into the Responses API's typed events, in the order the SDKs' stream
accumulators require (an item is added before its deltas, a content part before its text,
everything done before ``response.completed``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.edge.responses import reasoning
from services.edge.responses.items import ResponsesRequest
from services.edge.sse import DONE, json_data

Item = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(24).hex()}"


@dataclass
class Draft:
    """A response being built: its identity, the request it answers, its output so far."""

    request: ResponsesRequest
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    model: str = ""
    output: list[Item] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: dict[str, str] | None = None

    def status(self) -> str:
        if self.error is not None:
            return "failed"
        if self.finish_reason in ("length", "content_filter"):
            return "incomplete"
        return "completed"

    def body(self, status: str | None = None, *, public: bool = True) -> dict[str, Any]:
        """The response object (``public``: reasoning content only when the client asked to
        include it; the stored copy keeps it)."""
        r = self.request
        status = status or self.status()
        incomplete = None
        if status == "incomplete":
            incomplete = {"reason": "max_output_tokens" if self.finish_reason == "length" else "content_filter"}
        output = self.output if status != "in_progress" else []
        if public and "reasoning.encrypted_content" not in r.include:
            output = [_without_content(item) for item in output]
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": self.error,
            "incomplete_details": incomplete,
            "instructions": r.instructions,
            "max_output_tokens": r.max_output_tokens,
            "metadata": r.metadata,
            "model": self.model or r.model,
            "output": output,
            "parallel_tool_calls": r.parallel_tool_calls if r.parallel_tool_calls is not None else True,
            "previous_response_id": r.previous_response_id,
            "reasoning": r.reasoning.model_dump() if r.reasoning else {"effort": None, "summary": None},
            "store": r.store,
            "temperature": r.temperature if r.temperature is not None else 1.0,
            "text": {"format": r.text.format.model_dump(by_alias=True, exclude_none=True)},
            "tool_choice": r.tool_choice if isinstance(r.tool_choice, str) else r.tool_choice.model_dump(),
            "tools": [t.model_dump(exclude_none=True) for t in r.tools],
            "top_p": r.top_p if r.top_p is not None else 1.0,
            "truncation": r.truncation or "disabled",
            "usage": self.usage if status != "in_progress" else None,
            "user": r.user,
        }


def _without_content(item: Item) -> Item:
    if item.get("type") == "reasoning" and item.get("encrypted_content") is not None:
        return {k: v for k, v in item.items() if k != "encrypted_content"}
    return item


def usage_of(chat_usage: Any) -> dict[str, Any] | None:
    if not isinstance(chat_usage, dict):
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    thought = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(thought)},
        "total_tokens": prompt + completion,
    }


def _summary(draft: Draft, text: str) -> list[dict[str, str]]:
    wanted = draft.request.reasoning is not None and draft.request.reasoning.summary is not None
    return [{"type": "summary_text", "text": text}] if wanted and text else []


def reasoning_item(draft: Draft, text: str, blocks: list[dict[str, Any]], item_id: str | None = None) -> Item:
    item: Item = {"id": item_id or new_id("rs"), "type": "reasoning", "summary": _summary(draft, text)}
    if blocks:
        item["encrypted_content"] = reasoning.seal(blocks)
    return item


def message_item(
    text: str, refusal: str = "", item_id: str | None = None, status: str = "completed", extra: Any = None
) -> Item:
    content: list[Item] = []
    if text or not refusal:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    item: Item = {
        "id": item_id or new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }
    if isinstance(extra, dict) and extra:
        item["extra_content"] = extra  # a provider's signature, handed back on the next turn
    return item


def call_item(
    call_id: str, name: str, arguments: str, item_id: str | None = None, status: str = "completed", extra: Any = None
) -> Item:
    item: Item = {
        "id": item_id or new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
    if isinstance(extra, dict) and extra:
        item["extra_content"] = extra
    return item


def from_completion(draft: Draft, completion: dict[str, Any]) -> None:
    """A chat completion's choice and usage into the draft's output."""
    draft.model = str(completion.get("model") or draft.model)
    draft.usage = usage_of(completion.get("usage"))
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    draft.finish_reason = choice.get("finish_reason")
    message = choice.get("message") or {}
    blocks = [b for b in message.get("thinking_blocks") or [] if isinstance(b, dict)]
    thought = message.get("reasoning_content") or ""
    if thought or blocks:
        draft.output.append(reasoning_item(draft, str(thought), blocks))
    text, refusal = message.get("content") or "", message.get("refusal") or ""
    if text or refusal:
        draft.output.append(message_item(str(text), str(refusal), extra=message.get("extra_content")))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = str(fn.get("arguments") or "")
        draft.output.append(call_item(str(call.get("id")), str(fn.get("name")), args, extra=call.get("extra_content")))


# --- streaming ----------------------------------------------------------------------------


class StreamTranslator:
    """Chat chunks in, Responses events out. ``finish`` is awaited before the final event
    (the gateway stores the response there, so a client that reads ``response.completed``
    can continue from it on any edge at once)."""

    def __init__(self, draft: Draft, finish: Callable[[Draft], Awaitable[None]]) -> None:
        self.draft = draft
        self.finish = finish
        self.seq = 0
        self.open: Item | None = None  # the output item receiving deltas
        self.index = -1
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.thought: list[str] = []
        self.blocks: list[dict[str, Any]] = []
        self.calls: dict[int, Item] = {}  # chat tool-call index -> its function_call item
        self.extra: Any = None  # the message's provider signature (Gemini's), when one came

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def start(self) -> list[bytes]:
        body = self.draft.body("in_progress")
        return [self._event("response.created", response=body), self._event("response.in_progress", response=body)]

    async def translate(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for event in self._translate(chunks):
                yield event
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()  # the relay below closes the upstream connection

    async def _translate(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        for event in self.start():
            yield event
        async for chunk in chunks:
            if chunk == DONE:
                for event in self._close():
                    yield event
                await self.finish(self.draft)
                kind = "response.completed" if self.draft.status() == "completed" else "response.incomplete"
                yield self._event(kind, response=self.draft.body())
                return
            data = json_data(chunk)
            if data is None:
                continue
            if "error" in data:
                for event in self._close():
                    yield event
                err = data["error"] if isinstance(data["error"], dict) else {}
                self.draft.error = {
                    "code": str(err.get("code") or err.get("type") or "server_error"),
                    "message": str(err.get("message") or "the provider's stream failed"),
                }
                yield self._event("response.failed", response=self.draft.body())
                return
            for event in self._chunk(data):
                yield event

    def _chunk(self, data: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if data.get("model"):
            self.draft.model = str(data["model"])
        if data.get("usage"):
            self.draft.usage = usage_of(data["usage"])
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content")
            if thought:
                out += self._reasoning_delta(str(thought))
            blocks = delta.get("thinking_blocks")
            if isinstance(blocks, list) and blocks:
                if self._kind() != "reasoning":
                    out += self._reasoning_delta("")
                self.blocks.extend(b for b in blocks if isinstance(b, dict))
            if delta.get("extra_content"):
                self.extra = delta["extra_content"]
            if delta.get("content"):
                out += self._text_delta(str(delta["content"]))
            if delta.get("refusal"):
                out += self._open_message()
                self.refusal.append(str(delta["refusal"]))
            for call in delta.get("tool_calls") or []:
                out += self._call_delta(call)
            if choice.get("finish_reason"):
                self.draft.finish_reason = str(choice["finish_reason"])
        return out

    def _kind(self) -> str | None:
        return self.open["type"] if self.open is not None else None

    def _add(self, item: Item) -> bytes:
        self.open = item
        self.index += 1
        return self._event("response.output_item.added", output_index=self.index, item=item)

    def _reasoning_delta(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        summarised = bool(_summary(self.draft, "x"))
        if self._kind() != "reasoning":
            out += self._close()
            out.append(self._add({"id": new_id("rs"), "type": "reasoning", "summary": []}))
            if summarised:
                part = {"type": "summary_text", "text": ""}
                out.append(
                    self._event("response.reasoning_summary_part.added", **self._at(), summary_index=0, part=part)
                )
        if text:
            self.thought.append(text)
            if summarised:
                out.append(
                    self._event("response.reasoning_summary_text.delta", **self._at(), summary_index=0, delta=text)
                )
        return out

    def _open_message(self) -> list[bytes]:
        if self._kind() == "message":
            return []
        out = self._close()
        item = message_item("", item_id=new_id("msg"), status="in_progress")
        item["content"] = []
        out.append(self._add(item))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        out.append(self._event("response.content_part.added", **self._at(), content_index=0, part=part))
        return out

    def _text_delta(self, text: str) -> list[bytes]:
        out = self._open_message()
        self.text.append(text)
        out.append(self._event("response.output_text.delta", **self._at(), content_index=0, delta=text, logprobs=[]))
        return out

    def _call_delta(self, call: Any) -> list[bytes]:
        if not isinstance(call, dict):
            return []
        out: list[bytes] = []
        fn = call.get("function") or {}
        index = int(call.get("index") or 0)
        item = self.calls.get(index)
        if item is None:
            out += self._close()
            item = call_item(str(call.get("id") or new_id("call")), str(fn.get("name") or ""), "", status="in_progress")
            self.calls[index] = item
            out.append(self._add(item))
        if isinstance(call.get("extra_content"), dict):
            item["extra_content"] = call["extra_content"]
        args = fn.get("arguments")
        if args:
            item["arguments"] += str(args)
            out.append(self._event("response.function_call_arguments.delta", **self._at(), delta=str(args)))
        return out

    def _at(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": self.index}

    def _close(self) -> list[bytes]:
        """The open item's done events; the item joins the output."""
        item = self.open
        out: list[bytes] = []
        if item is None:
            return out
        kind = item["type"]
        if kind == "reasoning":
            text = "".join(self.thought)
            done = reasoning_item(self.draft, text, self.blocks, item["id"])
            if done["summary"]:
                part = done["summary"][0]
                out.append(
                    self._event("response.reasoning_summary_text.done", **self._at(), summary_index=0, text=text)
                )
                out.append(
                    self._event("response.reasoning_summary_part.done", **self._at(), summary_index=0, part=part)
                )
            self.thought, self.blocks = [], []
        elif kind == "message":
            text, refusal = "".join(self.text), "".join(self.refusal)
            done = message_item(text, refusal, item["id"], extra=self.extra)
            self.extra = None
            part = done["content"][0]
            if part["type"] == "output_text":
                out.append(
                    self._event("response.output_text.done", **self._at(), content_index=0, text=text, logprobs=[])
                )
            out.append(self._event("response.content_part.done", **self._at(), content_index=0, part=part))
            self.text, self.refusal = [], []
        else:
            done = call_item(
                item["call_id"], item["name"], item["arguments"], item["id"], extra=item.get("extra_content")
            )
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    **self._at(),
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        self.draft.output.append(done)
        out.append(self._event("response.output_item.done", output_index=self.index, item=_public(self.draft, done)))
        self.open = None
        return out


def _public(draft: Draft, item: Item) -> Item:
    return item if "reasoning.encrypted_content" in draft.request.include else _without_content(item)
