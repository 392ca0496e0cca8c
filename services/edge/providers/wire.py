"""The I/O half of a translating adapter: post a JSON body, read a JSON reply or relay an SSE
stream through a translator (a state machine that turns provider events into OpenAI chunks).

Every way a stream can end is decided here once: the translator saw the provider's end, the
provider sent an error event, the connection broke, or the stream stopped early. Only the first
is a finished stream; the others end with an OpenAI error event, never like a success.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

import aiohttp
from pydantic import TypeAdapter, ValidationError
from yarl import URL

from services.edge.providers.base import Call, StreamMeter
from services.edge.providers.common import error_event
from services.edge.sse import events
from services.edge.upstream import TRANSPORT_ERRORS, transport_error
from shared.errors import UPSTREAM, GatewayError

T = TypeVar("T")

ErrorMapper = Callable[[int, bytes, Mapping[str, str]], GatewayError]

INTERNAL_ERROR = "internal_error"  # a stream's error type when the gateway's own code failed

log = logging.getLogger("switchyard.edge.wire")


def checked(
    provider: str, schema: TypeAdapter[Any], value: Any, what: str = "a reply", code: str | None = None
) -> None:
    """A provider's reply (or stream event), checked against the shape the gateway reads
    (services/edge/providers/*_replies.py): of another shape, it is the provider's fault, a
    502 that says where."""
    try:
        schema.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"provider {provider!r} sent {what} of an unexpected shape ({where}: {first.get('msg')})"
        raise GatewayError(UPSTREAM, message, code=code) from exc


def read_reply(provider: str, schema: TypeAdapter[Any], reply: Any, translate: Callable[[], T]) -> T:
    """Translate a reply once it is checked: a reply of another shape is a 502; an error in the
    translation itself is the gateway's own and is not caught here (a 500, logged)."""
    checked(provider, schema, reply)
    return translate()


class StreamTranslator(Protocol):
    finished: bool  # the provider's stream reached its own end
    schema: TypeAdapter[Any] | None  # the shape of each provider event, checked before feed()

    def feed(self, event: dict[str, Any], data: bytes) -> list[bytes]:
        """The client's SSE events for one provider event, given parsed and as its ``data``
        bytes (may raise GatewayError for an error event)."""
        ...

    def eof(self) -> None:
        """The body ended; a provider whose streams have no end event decides here whether
        the stream was complete (sets ``finished``)."""
        ...

    def close(self) -> list[bytes]:
        """Events after the provider's stream ended: the usage chunk and ``[DONE]``."""
        ...


async def gather(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run calls at once and return their results in order; the first failure cancels the
    others and is raised as itself (a GatewayError, not an ExceptionGroup)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except ExceptionGroup as failed:
        first = next((e for e in failed.exceptions if isinstance(e, GatewayError)), None)
        if first is None:
            raise
        raise first from None
    return [task.result() for task in tasks]


ErrorEvent = Callable[[str, str, str], bytes]  # (message, code, type): the client's error event


def _payload(body: dict[str, Any] | bytes) -> bytes | str:
    """A body as built (serialised here) or as the client sent it (passed on untouched)."""
    return body if isinstance(body, bytes) else json.dumps(body)


async def post_json(
    call: Call, url: str | URL, body: dict[str, Any] | bytes, headers: dict[str, str], on_error: ErrorMapper
) -> tuple[bytes, float]:
    """POST and return the 200 reply's bytes and the upstream time in ms; errors mapped."""
    started = time.perf_counter()
    try:
        async with call.http.post(url, data=_payload(body), headers=headers) as resp:
            raw = await resp.read()
            status, resp_headers = resp.status, resp.headers
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, call.route.provider) from exc
    if status != 200:
        raise on_error(status, raw, resp_headers)
    return raw, (time.perf_counter() - started) * 1000


async def open_stream(
    call: Call, url: str | URL, body: dict[str, Any] | bytes, headers: dict[str, str], on_error: ErrorMapper
) -> aiohttp.ClientResponse:
    try:
        resp = await call.http.post(url, data=_payload(body), headers=headers)
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, call.route.provider) from exc
    if resp.status != 200:
        try:
            raw = await resp.read()
        except TRANSPORT_ERRORS:
            raw = b""
        finally:
            resp.release()
        raise on_error(resp.status, raw, resp.headers)
    return resp


async def relay(
    call: Call,
    resp: aiohttp.ClientResponse,
    translator: StreamTranslator,
    meter: StreamMeter,
    error_event: ErrorEvent = error_event,
    decode: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] = events,
) -> AsyncIterator[bytes]:
    """Relay a provider's stream through ``translator``; every way it can fail ends with
    ``error_event`` (in the client's API shape: OpenAI's unless told otherwise). ``decode``
    splits the body into events (server-sent events unless told otherwise)."""
    provider = call.route.provider
    try:
        async for data in decode(resp.content.iter_any()):
            if data == b"[DONE]":  # OpenAI's end of a stream (no other provider sends one)
                translator.finished = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                meter.error_type = "upstream_bad_event"
                yield error_event(
                    f"provider {provider!r} sent an event that is not JSON", "upstream_bad_event", "api_error"
                )
                return
            if not isinstance(event, dict):
                continue
            try:
                if translator.schema is not None:
                    checked(provider, translator.schema, event, "an event", "upstream_bad_event")
                out = translator.feed(event, data)
            except GatewayError as exc:
                meter.error_type = exc.code or "upstream_error"
                yield error_event(exc.message, exc.code or "upstream_error", exc.type)
                return
            except Exception:  # the gateway's own bug, on an event of the shape it reads
                log.exception("internal error translating a stream from %s", provider)
                meter.error_type = INTERNAL_ERROR
                yield error_event(
                    "The gateway hit an internal error translating the stream; it has been logged.",
                    INTERNAL_ERROR,
                    "server_error",
                )
                return
            for item in out:
                yield item
            if translator.finished:
                break
        else:
            translator.eof()
    except TRANSPORT_ERRORS as exc:
        err = transport_error(exc, provider)
        meter.error_type = "upstream_disconnected"
        yield error_event(f"stream from provider interrupted: {err.message}", "upstream_disconnected", "api_error")
        return
    except ValueError as exc:
        meter.error_type = "upstream_bad_event"
        yield error_event(str(exc), "upstream_bad_event", "api_error")
        return
    finally:
        meter.upstream_done_at = time.perf_counter()
        if translator.finished:
            resp.release()
        else:
            resp.close()  # cut the connection: the provider stops generating
    if not translator.finished:
        meter.error_type = "upstream_truncated"
        yield error_event(
            f"stream from provider {provider!r} ended before it finished", "upstream_truncated", "api_error"
        )
        return
    meter.finished = True
    for item in translator.close():
        yield item
