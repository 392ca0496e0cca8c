"""``POST /v1/chat/completions``: auth, route, adapter, respond, meter.

The hot path. It is a plain Starlette endpoint (FastAPI's dependency solving cost more than
the rest of the handler, see docs/performance.md); everything it needs is in process memory,
and its only network call is the upstream one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.edge import failover, metadata
from services.edge.access import new_request_id
from services.edge.admission import Consumes, Ticket
from services.edge.auth import require_model
from services.edge.body import check_chat, parse_json, read_body
from services.edge.metered import RequestRecord
from services.edge.providers.base import Adapter, Call, Completion, Credential, StreamMeter, Usage
from services.edge.providers.common import error_event
from services.edge.providers.wire import INTERNAL_ERROR, ErrorEvent
from services.edge.sse import DONE
from services.edge.state import Edge
from shared.catalog import Plan, Route, RouteTable
from shared.errors import INVALID_REQUEST, NO_PROVIDER_KEY, UPSTREAM, UPSTREAM_TIMEOUT, GatewayError
from shared.gateway_config import Timeouts

OVERHEAD_HEADER = "x-switchyard-overhead-ms"
DROP_PARAMS_HEADER = "x-switchyard-drop-params"
DROPPED_HEADER = "x-switchyard-dropped-params"
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%,")


async def begin(
    request: Request, endpoint: str, check: Callable[[dict[str, Any]], None], key_header: str = "api-key"
) -> tuple[Edge, RequestRecord, bool]:
    """What every model endpoint does first: authenticate (a bearer token, or the key in
    ``key_header``), read and check the body, take the drop-params opt-in out of it, and open
    the request's usage record (which keeps the body's bytes as they came)."""
    edge: Edge = request.app.state.edge
    principal = edge.client_keys.authenticate(request.headers.get("authorization"), request.headers.get(key_header))
    raw = await read_body(request, edge.settings.max_body_bytes, edge.settings.body_timeout)
    body = parse_json(raw)
    exact = "drop_params" not in body
    drop = drop_params(request, body)
    check(body)
    state = request.state
    record = RequestRecord(
        request_id=state.request_id,
        # A client's own request id need not be unique; the event's identity must be.
        event_id=new_request_id() if state.request_id_inbound else state.request_id,
        principal=principal,
        endpoint=endpoint,
        body=body,
        instance=edge.instance,
        routing_decision_id="rd_" + os.urandom(12).hex(),
        raw_body=raw,
        exact_body=body if exact else None,
    )
    edge.telemetry.open(record, request.headers)
    state.record = record  # for the access line
    if body.get("stream") is True:
        try:
            record.stream_slot = edge.streams.take(principal.key_id, record)
        except GatewayError as exc:
            failed(edge, record, exc, None, None, stream=True)
            raise
    return edge, record, drop


# How long after its own bound (the plan's total_seconds) an admitted request's final event may
# take to reach metering before the request is billed at its reservation.
_SETTLE_MARGIN = 120.0
_UNBOUNDED = 3600.0


async def admit(
    edge: Edge,
    record: RequestRecord,
    plan: Plan,
    table: RouteTable,
    body: dict[str, Any],
    consumes: Consumes = "answer",
) -> Ticket:
    """Reserve the request's limits and budgets, then note it as admitted on the bus (off the
    request path, before any upstream call): if this process dies before the request ends,
    metering bills it at what it reserved (services/metering/orphans.py)."""
    ticket = await edge.admission.admit(record.principal, plan, table, body, consumes)
    prompt, output = ticket.estimate or (len(record.raw_body), edge.admission.output_bound(body))
    if consumes == "embeddings":
        output = 0
    # A request with no total bound that outlives this is billed at its reservation until its
    # final event comes and replaces the bill.
    deadline = record.started_wall + (plan.timeouts.total_seconds or _UNBOUNDED) + _SETTLE_MARGIN
    edge.telemetry.usage.submit(record.admitted(plan.targets[0], prompt, output, deadline))
    return ticket


async def chat_completions(request: Request) -> Response:
    edge, record, drop = await begin(request, "chat.completions", check_chat)
    body, principal = record.body, record.principal
    stream = bool(body.get("stream"))
    plan = ticket = None
    try:
        plan = edge.routes.plan(body["model"])
        require_model(principal, plan)
        table = edge.routes.current()
        ticket = await admit(edge, record, plan, table, body)
        call, served, upstream_ms = await attempt(edge, record, drop, plan, table, stream=stream)
    except GatewayError as exc:
        failed(edge, record, exc, plan, ticket, stream=stream)
        raise
    meta = metadata.metadata(record, edge.settings.region)
    if isinstance(served, Completion):
        completion = served
        settle(edge, record, ticket, completion.usage)
        headers = response_headers(record, upstream_ms, call, plan, ticket)
        edge.telemetry.note_output(record, completion.body)
        edge.telemetry.finish(record, record.event(status=200, usage=completion.usage, upstream_ms=upstream_ms), table)
        return Response(metadata.into_body(completion.body, meta), media_type="application/json", headers=headers)
    headers = response_headers(record, upstream_ms, call, plan, ticket)
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"
    events = guarded(served, plan.timeouts, call.route.provider)
    return StreamingResponse(
        metered_stream(events, served.meter, record, edge, meta, ticket),
        media_type="text/event-stream",
        headers=headers,
    )


async def attempt(
    edge: Edge, record: RequestRecord, drop: bool, plan: Plan, table: RouteTable, *, stream: bool
) -> tuple[Call, Completion | Opened, float]:
    """Serve ``record.body`` (a chat completions request) from the plan's targets through
    their chat adapters: the answer, or the stream once its first event is in hand, with
    the time the provider took (until that first event, for a stream)."""
    attempts = edge.telemetry.attempts(record, table)
    if stream:

        async def open_stream(route: Route) -> tuple[Call, Opened]:
            adapter = edge.registry.get(table.providers[route.provider].api, route.provider)
            return await first_event(edge, record, drop, route, adapter, plan.timeouts)

        call, opened = await failover.serve(plan, table, edge.health, open_stream, attempts)
        return call, opened, (time.perf_counter() - opened.meter.started) * 1000

    async def complete(route: Route) -> tuple[Call, Completion]:
        adapter = edge.registry.get(table.providers[route.provider].api, route.provider)
        work = with_provider_keys(edge, record, drop, route, adapter.chat)
        return await bounded(work, plan.timeouts.total_seconds, route, "answer")

    call, completion = await failover.serve(plan, table, edge.health, complete, attempts)
    return call, completion, completion.upstream_ms


def failed(
    edge: Edge, record: RequestRecord, exc: GatewayError, plan: Plan | None, ticket: Ticket | None, *, stream: bool
) -> None:
    """A model request that ends in an error: settle what it reserved, meter it, and give the
    error the routing and limit headers."""
    if ticket is not None:
        ticket.settle(0, 0.0)
        exc.headers.update(ticket.headers())
    event = record.event(status=exc.status, error_type=exc.type, stream=stream)
    edge.telemetry.finish(record, event, edge.routes.table)
    exc.headers.update(metadata.headers(record, plan))


def settle(edge: Edge, record: RequestRecord, ticket: Ticket, usage: Usage) -> None:
    """Settle a finished request's reservations to what it consumed."""
    if ticket.claims:
        cost = edge.prices.cost(record.route, edge.routes.current(), usage, record.price_context, record.started_wall)
        ticket.settle(usage.prompt_tokens + usage.completion_tokens, cost)


T = TypeVar("T")


@dataclass
class Opened:
    """A stream whose first event arrived (nothing has been sent to the client yet)."""

    first: bytes
    rest: AsyncIterator[bytes]
    meter: StreamMeter


async def first_event(
    edge: Edge, record: RequestRecord, drop: bool, route: Route, adapter: Adapter, timeouts: Timeouts
) -> tuple[Call, Opened]:
    """Open the stream and wait for its first event within ``first_token_seconds``: until
    then the attempt may fail over. A stream whose first event is already an error (the
    provider failed at once) is a failed attempt too."""
    meter = StreamMeter()
    call, events = await bounded(
        with_provider_keys(edge, record, drop, route, lambda c: adapter.stream(c, meter)),
        timeouts.first_token_seconds,
        route,
        "send a first token",
    )
    it = events.__aiter__()
    left = None
    if timeouts.first_token_seconds is not None:
        left = max(timeouts.first_token_seconds - (time.perf_counter() - meter.started), 0.001)
    try:
        first = await bounded(it.__anext__(), left, route, "send a first token")
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await _close(events)
        raise
    if not first or meter.error_type:
        await _close(events)
        why = _error_message(first) or "the stream ended before its first event"
        err = GatewayError(UPSTREAM, f"provider {route.provider!r} failed the stream before its first token: {why}")
        err.upstream_status = 502
        raise err
    return call, Opened(first, it, meter)


def _error_message(event: bytes) -> str:
    """The message of an OpenAI-shaped error event (what a relay sends for a failed stream)."""
    try:
        payload = json.loads(event.removeprefix(b"data: "))
        return str(payload["error"]["message"])
    except (ValueError, TypeError, KeyError):
        return ""


async def bounded(work: Awaitable[T], seconds: float | None, route: Route, what: str) -> T:
    """``work`` within ``seconds`` (unbounded for None); a miss is an upstream timeout."""
    if seconds is None:
        return await work
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        err = GatewayError(UPSTREAM_TIMEOUT, f"provider {route.provider!r} did not {what} within {seconds:g} s")
        err.cause = "timeout"
        raise err from None


async def guarded(
    opened: Opened, timeouts: Timeouts, provider: str, error: ErrorEvent = error_event
) -> AsyncIterator[bytes]:
    """The stream after its first event, with the idle and total bounds: a stall ends it with
    an ``error`` event in the client's API shape (never with ``[DONE]``) and closes the
    upstream connection."""
    yield opened.first
    meter, rest = opened.meter, opened.rest
    if timeouts.idle_seconds is None and timeouts.total_seconds is None:
        try:
            async for event in rest:
                yield event
        finally:
            await _close(rest)
        return
    watch = _Watchdog(timeouts, meter.started)
    try:
        while True:
            try:
                event = await watch.wait(rest.__anext__())
            except StopAsyncIteration:
                return
            except TimeoutError:
                meter.error_type = "upstream_stalled" if watch.stalled else "upstream_total_timeout"
                why = (
                    f"sent nothing for {timeouts.idle_seconds:g} s"
                    if watch.stalled
                    else (f"did not finish within {timeouts.total_seconds:g} s")
                )
                yield error(f"stream from provider {provider!r} stopped: it {why}", meter.error_type, "api_error")
                return
            yield event
    finally:
        watch.stop()
        await _close(rest)


class _Watchdog:
    """The idle and total bounds of one stream with one timer, re-armed only when it fires
    (a chunk costs two assignments, not a timer of its own). It cancels the stream's task
    only while that task waits for the provider, never while it writes to the client."""

    def __init__(self, timeouts: Timeouts, started: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.idle = timeouts.idle_seconds
        now, elapsed = self.loop.time(), time.perf_counter() - started
        self.deadline = now - elapsed + timeouts.total_seconds if timeouts.total_seconds is not None else None
        self.last = now
        self.waiting = False
        self.fired = False
        self.stalled = False
        self.handle = self.loop.call_at(self._due(), self._check)

    def _due(self) -> float:
        due = self.last + self.idle if self.idle is not None else float("inf")
        return min(due, self.deadline) if self.deadline is not None else due

    def _check(self) -> None:
        due = self._due()
        if self.loop.time() < due:
            self.handle = self.loop.call_at(due, self._check)  # chunks came since: not yet
        elif not self.waiting:
            self.handle = self.loop.call_later(0.05, self._check)  # writing to the client: after that
        elif self.task is not None:
            self.fired = True
            self.stalled = self.deadline is None or self.loop.time() < self.deadline
            self.task.cancel()

    async def wait(self, step: Awaitable[bytes]) -> bytes:
        self.waiting = True
        try:
            return await step
        except asyncio.CancelledError:
            if self.fired and self.task is not None and self.task.uncancel() == 0:
                raise TimeoutError from None  # our own cancellation: the provider went quiet
            raise
        finally:
            self.waiting = False
            self.last = self.loop.time()

    def stop(self) -> None:
        self.handle.cancel()


async def _close(events: AsyncIterator[bytes]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()  # closes the upstream response: the provider stops generating


async def with_provider_keys(
    edge: Edge, record: RequestRecord, drop: bool, route: Route, attempt: Callable[[Call], Awaitable[T]]
) -> tuple[Call, T]:
    """Run ``attempt`` against ``route`` with a provider key, once per key while the provider
    refuses keys. A provider without a key in hand asks keyvault once before giving up."""
    provider = edge.routes.current().providers[route.provider]
    tried: frozenset[str] = frozenset()
    asked = False
    while True:
        pick = edge.credentials.pick if provider.requires_key else edge.credentials.optional
        try:
            credential = pick(route.provider, route.upstream_model, tried)
        except GatewayError as exc:
            if asked or exc.code != NO_PROVIDER_KEY.code:
                raise
            asked = True  # maybe a key was just added and its change event is on the way
            await edge.credentials.fetch_on_miss(timeout=3.0)
            continue
        record.provider_key_id = credential.key_id if credential else ""
        # The client's bytes, while they are exactly the body (services/edge/metered.py).
        raw = record.raw_body if record.exact_body is record.body and not drop else b""
        call = Call(
            route, provider, credential, record.body, record.request_id, edge.http, drop, media=edge.media, raw=raw
        )
        record.dropped = call.dropped  # filled as the adapter checks the request: what it is billed as
        try:
            return call, await attempt(call)
        except GatewayError as exc:
            if credential is None or not _key_refused(edge, route, credential, exc):
                raise
            tried |= {credential.key_id}
            if not edge.credentials.has_other(route.provider, route.upstream_model, tried):
                # The provider's own answer (a 429 with its retry-after, for the retry policy; a
                # 401/403 as it is). Later requests learn the truth from the next pick: every
                # key cooling down, or every key refused since when.
                raise


def drop_params(request: Request, body: dict[str, Any]) -> bool:
    """Whether the client opted into dropping what the provider cannot honour: the header
    ``x-switchyard-drop-params: true`` or ``"drop_params": true`` in the body (taken out)."""
    flag = body.pop("drop_params", None)
    if flag is not None and not isinstance(flag, bool):
        raise GatewayError(INVALID_REQUEST, "'drop_params' must be a boolean.", param="drop_params")
    header = request.headers.get(DROP_PARAMS_HEADER, "").strip().lower()
    return flag is True or header in ("true", "1", "yes")


def response_headers(
    record: RequestRecord, upstream_ms: float, call: Call, plan: Plan, ticket: Ticket
) -> dict[str, str]:
    """A model answer's headers: the gateway's overhead, dropped parameters, the routing
    metadata and the limits (as they stand once the request is settled, for an answer that
    is not streamed)."""
    overhead = (time.perf_counter() - record.started) * 1000 - upstream_ms
    headers = {OVERHEAD_HEADER: f"{max(overhead, 0.0):.3f}"}
    if call.dropped:
        # Names as the client wrote them, percent-encoded where a header cannot carry them (not
        # visible ASCII: line breaks, spaces, other scripts) and for ``%`` and the separator.
        headers[DROPPED_HEADER] = ",".join(quote(name, safe=_HEADER_SAFE) for name in call.dropped)
    headers.update(metadata.headers(record, plan))
    headers.update(ticket.headers())
    return headers


def _key_refused(edge: Edge, route: Route, credential: Credential, exc: GatewayError) -> bool:
    """Whether the provider refused this key (not the request): 429 cools it down, 401/403
    take it out of service. Either way another key may do."""
    if exc.upstream_status == 429:
        edge.credentials.cool_down(credential, route.upstream_model, exc.headers.get("retry-after"))
        return True
    if exc.upstream_status in (401, 403):
        edge.credentials.mark_invalid(route.provider, credential, f"HTTP {exc.upstream_status}: {exc.message[:200]}")
        return True
    return False


async def metered_stream(
    events: AsyncIterator[bytes],
    meter: StreamMeter,
    record: RequestRecord,
    edge: Edge,
    meta: dict[str, object] | None,
    ticket: Ticket,
) -> AsyncIterator[bytes]:
    """Relay events (OpenAI chunks get the routing metadata, ``meta``, in the last chunk
    before ``[DONE]``; another API's events, with no ``meta``, pass as they are); whatever
    happens (finish, upstream error, client gone), meter once."""
    status, error_type = 200, ""
    relayed = events if meta is None else _with_metadata(events, record, edge, meta)
    try:
        async for event in relayed:
            yield event
        if not meter.finished or meter.error_type:  # cut short, or ended by the provider's own failure event
            error_type = meter.error_type or "upstream_error"
            status = 500 if error_type == INTERNAL_ERROR else 502  # our own bug is not the provider's
    except BaseException:  # the client went away (cancellation) or the relay broke
        status, error_type = 499, "client_disconnected"
        raise
    finally:
        if relayed is not events:
            await _close(relayed)
        await _close(events)
        ttft = ((meter.first_chunk_at or meter.started) - meter.started) * 1000
        upstream_end = meter.upstream_done_at or time.perf_counter()
        usage = meter.final_usage(record.body)
        settle(edge, record, ticket, usage)
        outcome = record.event(
            status=status,
            usage=usage,
            error_type=error_type,
            stream=True,
            ttft_ms=ttft,
            upstream_ms=(upstream_end - meter.started) * 1000,
        )
        edge.telemetry.finish(record, outcome, edge.routes.table)


async def _with_metadata(
    events: AsyncIterator[bytes], record: RequestRecord, edge: Edge, meta: dict[str, object]
) -> AsyncIterator[bytes]:
    """OpenAI chunks with the routing metadata in the last one before ``[DONE]``."""
    held = b""  # a chunk that may be the last one, until the next event tells
    async for event in events:
        if event == DONE:
            yield metadata.into_event(held, meta) if held else metadata.stream_chunk(record, meta)
            held = b""
        elif held:
            yield held
            held = b""
        if event != DONE and metadata.may_be_last(event):
            held = event
            if record.span is not None:
                edge.telemetry.note_chunk(record, event)
            continue
        yield event
    if held:
        yield held
