"""A fake OpenAI upstream fast enough never to be the bottleneck.

Replies are pre-encoded; a stream sends ``--chunks`` content chunks ``--interval`` seconds
apart (a model generating), then the finish chunk,
the usage chunk when asked, and ``[DONE]``, in OpenAI's order.

    python -m bench.upstream --port 9000 [--chunks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvloop
from aiohttp import web

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
).encode()

# A request whose body holds this word is refused as OpenAI refuses a bad request.
FAIL = b"bench-upstream-refuses-this"
ERROR = json.dumps(
    {
        "error": {
            "message": "refused by the bench upstream",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
).encode()


def _chunk(delta: dict[str, object], finish: str | None = None, usage: object = None, choices: bool = True) -> bytes:
    body: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
    }
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def build_app(chunks: int, interval: float) -> web.Application:
    async def _send(resp: web.StreamResponse, head: bytes, words: list[bytes], tail: bytes) -> web.StreamResponse:
        """The head, each word ``interval`` apart (a model generating tokens), the tail; a
        client that goes away (the gateway, when its own client dropped) ends it quietly."""
        try:
            await resp.write(head)
            for word in words:
                if interval:
                    await asyncio.sleep(interval)
                await resp.write(word)
            await resp.write(tail)
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    head = _chunk({"role": "assistant", "content": ""})
    words = [_chunk({"content": f"tok{i} "}) for i in range(chunks)]
    finish = _chunk({}, "stop")
    usage = _chunk(
        {}, usage={"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}, choices=False
    )
    done = b"data: [DONE]\n\n"

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if FAIL in raw:  # the soak's upstream errors (bench/soak.py)
            return web.Response(body=ERROR, status=400, content_type="application/json")
        if b'"stream": true' not in raw and b'"stream":true' not in raw:
            return web.Response(body=COMPLETION, content_type="application/json")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        tail = finish + (usage if b"include_usage" in raw else b"") + done
        return await _send(resp, head, words, tail)

    # Anthropic's Messages stream with the same text, for the translated path.
    def event(name: str, data: dict[str, object]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    a_usage = {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench", "content": []}
    a_head = event("message_start", {"type": "message_start", "message": dict(message, usage=a_usage)}) + event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    a_words = [
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}},
        )
        for i in range(chunks)
    ]
    a_tail = (
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": chunks}},
        )
        + event("message_stop", {"type": "message_stop"})
    )

    async def replay(request: web.Request, head: bytes, words: list[bytes], tail: bytes) -> web.StreamResponse:
        """A pre-encoded stream: the head, each word ``interval`` apart, the tail."""
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        return await _send(resp, head, words, tail)

    async def messages(request: web.Request) -> web.StreamResponse:
        return await replay(request, a_head, a_words, a_tail)

    # Gemini's streamGenerateContent (alt=sse) with the same text: whole responses per chunk.
    def g_chunk(parts: list[dict[str, object]], finish: str | None = None) -> bytes:
        candidate: dict[str, object] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body: dict[str, object] = {"candidates": [candidate], "modelVersion": "gemini-bench", "responseId": "bench"}
        if finish:
            body["usageMetadata"] = {
                "promptTokenCount": 12,
                "candidatesTokenCount": chunks,
                "totalTokenCount": 12 + chunks,
            }
        return b"data: " + json.dumps(body).encode() + b"\r\n\r\n"

    g_words = [g_chunk([{"text": f"tok{i} "}]) for i in range(chunks)]
    g_tail = g_chunk([{"text": ""}], "STOP")

    async def generate(request: web.Request) -> web.StreamResponse:
        return await replay(request, b"", g_words, g_tail)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1beta/models/{model_method}", generate)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between stream chunks")
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(build_app(args.chunks, args.interval), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
