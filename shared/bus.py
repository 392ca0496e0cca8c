"""The one seam to NATS: connection, typed request-reply, services, KV and JetStream.

Every service talks to the bus through :class:`Bus`; nothing else imports ``nats``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from shared.errors import (
    INTERNAL,
    INVALID_REQUEST,
    UNAVAILABLE,
    ErrorBody,
    GatewayError,
)
from shared.messages import Reply

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)

Handler = Callable[[M], Awaitable[BaseModel | list[Any] | dict[str, Any] | None]]

__all__ = ["Bus", "BusUnavailable", "KVMirror", "KeyValue", "Msg"]


class BusUnavailable(Exception):
    pass


class Bus:
    """A NATS connection that reconnects forever and speaks pydantic models."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._reconnect_listeners: list[asyncio.Event] = []

    # --- connection ----------------------------------------------------------------------

    async def connect(self, *, deadline: float | None = None) -> None:
        """Connect, retrying the first connection until ``deadline`` seconds (forever if None)."""
        loop = asyncio.get_running_loop()
        give_up = None if deadline is None else loop.time() + deadline
        delay = 0.1
        while True:
            try:
                self._nc = await nats.connect(
                    self.url,
                    name=self.name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    connect_timeout=2,
                    ping_interval=5,
                    max_outstanding_pings=3,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                )
                break
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                if give_up is not None and loop.time() > give_up:
                    raise BusUnavailable(f"cannot reach NATS at {self.url}: {exc}") from exc
                log.info("waiting for NATS at %s (%s)", self.url, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._js = self._nc.jetstream(timeout=5)
        log.info("connected to NATS at %s", self.url)

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats error: %s", exc)

    async def _on_disconnect(self) -> None:
        log.warning("disconnected from NATS")

    async def _on_reconnect(self) -> None:
        log.info("reconnected to NATS")
        for event in self._reconnect_listeners:
            event.set()

    def on_reconnect(self) -> asyncio.Event:
        """An event set at every reconnection (the listener clears it)."""
        event = asyncio.Event()
        self._reconnect_listeners.append(event)
        return event

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise BusUnavailable("not connected")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BusUnavailable("not connected")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def close(self) -> None:
        """Drain (finish in-flight handlers, flush publishes), but never hang a shutdown."""
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=3.0)
            except (TimeoutError, nats.errors.Error):
                await self._nc.close()

    # --- request-reply -------------------------------------------------------------------

    async def request(self, subject: str, message: BaseModel, reply_type: type[T], *, timeout: float = 5.0) -> T:
        """Ask a service; its error replies are raised as the :class:`GatewayError` they carry."""
        data = await self.request_raw(subject, message.model_dump_json().encode(), timeout=timeout)
        reply = Reply.model_validate_json(data)
        if not reply.ok:
            raise GatewayError.from_body(reply.status, reply.error or _unknown_error())
        return reply_type.model_validate(reply.data)

    async def request_raw(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise GatewayError(UNAVAILABLE, f"no service answers {subject}") from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise GatewayError(UNAVAILABLE, f"timed out waiting for {subject}") from exc
        except (nats.errors.Error, BusUnavailable) as exc:
            raise GatewayError(UNAVAILABLE, f"message bus unavailable: {exc}") from exc
        return msg.data

    async def serve(self, subject: str, queue: str, request_type: type[M], handler: Handler[M]) -> None:
        """Answer requests on ``subject`` in queue group ``queue`` with ``handler``."""

        async def on_msg(msg: Msg) -> None:
            reply: Reply
            try:
                request = request_type.model_validate_json(msg.data or b"{}")
                result = await handler(request)
                data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
                reply = Reply(ok=True, data=data)
            except ValidationError as exc:
                err = GatewayError(INVALID_REQUEST, _validation_message(exc))
                reply = Reply(ok=False, status=err.status, error=err.body())
            except GatewayError as exc:
                log.log(exc.kind.log_level, "%s: %s", subject, exc.message)
                reply = Reply(ok=False, status=exc.status, error=exc.body())
            except Exception:
                log.exception("handler for %s failed", subject)
                err = GatewayError(INTERNAL, f"internal error in {self.name}")
                reply = Reply(ok=False, status=err.status, error=err.body())
            if msg.reply:
                try:
                    await msg.respond(reply.model_dump_json().encode())
                except nats.errors.Error as exc:
                    log.warning("could not answer on %s: %s", subject, exc)

        await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    async def publish(self, subject: str, message: BaseModel) -> None:
        await self.nc.publish(subject, message.model_dump_json().encode())

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> None:
        await self.nc.subscribe(subject, cb=cb)

    # --- KV and JetStream ---------------------------------------------------------------

    async def kv(self, bucket: str, *, history: int = 1) -> KeyValue:
        """The bucket, created on first use (file storage, so it survives restarts)."""
        try:
            return await self.js.key_value(bucket)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            return await self.js.create_key_value(
                KeyValueConfig(bucket=bucket, history=history, storage=StorageType.FILE)
            )

    async def pull_consumer(
        self, stream: str, subject: str, durable: str, *, ack_wait: float = 30.0
    ) -> JetStreamContext.PullSubscription:
        """A durable pull consumer: explicit acks, redelivery after ``ack_wait``."""
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_ack_pending=-1,
            filter_subject=subject,
        )
        await self.js.add_consumer(stream, config)  # create, or update an existing one's settings
        return await self.js.pull_subscribe(subject, durable=durable, stream=stream, config=config)

    async def fetch(self, sub: JetStreamContext.PullSubscription, batch: int, *, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages; none when nothing arrived in ``timeout``.
        Raises BusUnavailable when the bus itself failed."""
        try:
            return list(await sub.fetch(batch, timeout=timeout))
        except nats.errors.TimeoutError:
            return []
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(str(exc)) from exc

    async def publish_durable(self, subject: str, payload: bytes, *, msg_id: str, timeout: float = 5.0) -> None:
        """Publish to JetStream and wait for the ack; ``msg_id`` lets the stream drop repeats."""
        await self.js.publish(subject, payload, timeout=timeout, headers={"Nats-Msg-Id": msg_id})

    async def publish_durable_many(
        self, subject: str, messages: list[tuple[bytes, str]], *, timeout: float = 5.0
    ) -> list[BaseException | None]:
        """Publish ``(payload, msg_id)`` pairs without a round trip each; one result per message
        (None once the stream has stored it, else the error)."""

        async def one(future: asyncio.Future[PubAck]) -> None:
            await asyncio.wait_for(future, timeout)

        futures: list[asyncio.Future[PubAck] | BaseException] = []
        for payload, msg_id in messages:
            try:
                futures.append(
                    await self.js.publish_async(subject, payload, wait_stall=timeout, headers={"Nats-Msg-Id": msg_id})
                )
            except Exception as exc:
                futures.append(exc)
        waits = [one(f) for f in futures if not isinstance(f, BaseException)]
        outcomes = iter(await asyncio.gather(*waits, return_exceptions=True))
        return [f if isinstance(f, BaseException) else next(outcomes) for f in futures]

    async def consumer_pending(self, stream: str, durable: str) -> int:
        """Messages the consumer has not had acknowledged yet (waiting plus in flight)."""
        info = await self.js.consumer_info(stream, durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def stream_messages(self, stream: str) -> int:
        return int((await self.js.stream_info(stream)).state.messages or 0)

    async def ensure_stream(
        self, name: str, subjects: list[str], *, work_queue: bool = False, duplicate_window: float = 600.0
    ) -> None:
        """Create the stream, or bring an existing one's settings up to date.

        A work queue keeps each message until its consumer acknowledges it, then drops it: events
        wait as long as their writer is down, and the stream does not grow once they are stored.
        """
        config = StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            duplicate_window=duplicate_window,
            retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
        )
        try:
            await self.js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config)
            return
        try:
            await self.js.update_stream(config)
        except nats.js.errors.APIError as exc:  # e.g. a retention policy cannot change in place
            log.warning("stream %s keeps its existing settings: %s", name, exc)


def _unknown_error() -> ErrorBody:
    return ErrorBody(message="service returned an error without details", type="api_error")


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg"))


class KVMirror:
    """An in-memory copy of a KV bucket, kept fresh by a watcher.

    Readers use :attr:`entries` (a plain dict) with no I/O. After a reconnection the watcher
    is rebuilt and the copy replaced as a whole once the bucket's current state has arrived,
    so a key deleted while disconnected does not linger.
    """

    def __init__(self, bus: Bus, bucket: str, on_change: Callable[[dict[str, bytes]], None]) -> None:
        self.bus = bus
        self.bucket = bucket
        self.entries: dict[str, bytes] = {}
        self.ready = asyncio.Event()
        self._on_change = on_change

    async def run(self) -> None:
        reconnected = self.bus.on_reconnect()
        while True:
            reconnected.clear()
            follow = asyncio.create_task(self._follow())
            wait_reconnect = asyncio.create_task(reconnected.wait())
            try:
                await asyncio.wait({follow, wait_reconnect}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (follow, wait_reconnect):
                    task.cancel()
                await asyncio.gather(follow, wait_reconnect, return_exceptions=True)
            if follow.done() and not follow.cancelled() and follow.exception() is not None:
                log.warning("watch on %s failed: %s; restarting", self.bucket, follow.exception())
                await asyncio.sleep(0.5)

    async def _follow(self) -> None:
        kv = await self.bus.kv(self.bucket)
        watcher = await kv.watchall()
        try:
            fresh: dict[str, bytes] | None = {}
            async for entry in watcher:
                if entry is None:  # the bucket's current state is complete
                    if fresh is not None:
                        self._swap(fresh)
                        fresh = None
                    continue
                target = fresh if fresh is not None else dict(self.entries)
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    target.pop(entry.key, None)
                else:
                    target[entry.key] = entry.value
                if fresh is None:
                    self._swap(target)
        finally:
            try:
                await watcher.stop()  # type: ignore[no-untyped-call]
            except Exception:  # the connection may be gone already
                pass

    def _swap(self, entries: dict[str, bytes]) -> None:
        self.entries = entries
        self._on_change(entries)
        self.ready.set()
