"""The one seam to NATS: connection, typed request-reply, services, KV and JetStream.

Every service talks to the bus through :class:`Bus`; nothing else imports ``nats``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from shared import metrics
from shared.errors import (
    INTERNAL,
    INVALID_REQUEST,
    TOO_LARGE,
    UNAVAILABLE,
    ErrorBody,
    GatewayError,
)
from shared.messages import Reply

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# On a message republished from a spool: its first publish may have been stored (docs above).
REPLAYED_HEADER = "Switchyard-Replayed"
# On a message that holds a batch of events, one JSON object a line: how many.
BATCH_HEADER = "Switchyard-Events"
# Of a batch's lines, how many are admission notes rather than events (a reader sizes its
# own batches by events).
NOTES_HEADER = "Switchyard-Notes"

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)

Handler = Callable[[M], Awaitable[BaseModel | list[Any] | dict[str, Any] | None]]

__all__ = ["Bus", "BusUnavailable", "KVMirror", "KeyValue", "Msg"]


class BusUnavailable(Exception):
    pass


def server_urls(url: str) -> list[str]:
    """The servers of a comma-separated list of NATS URLs (a cluster's seeds)."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("GATEWAY_NATS_URL is empty")
    return urls


def redact(url: str) -> str:
    """The URLs without the passwords in them, for logs and files."""
    out = []
    for one in server_urls(url):
        parts = urlsplit(one if "://" in one else f"nats://{one}")
        host = parts.hostname or ""
        netloc = (f"{parts.username}:***@" if parts.password else "") + host
        netloc += f":{parts.port}" if parts.port else ""
        out.append(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
    return ",".join(out)


class Bus:
    """A NATS connection that reconnects forever and speaks pydantic models.

    ``service`` names the service the connection belongs to: its reply inboxes are
    ``_INBOX.<service>.*``, so NATS permissions can give each service its own and no other's.
    ``replicas`` is the replica count of every stream and bucket this connection creates.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        service: str | None = None,
        replicas: int = 1,
        creds: Path | None = None,
        ca_file: Path | None = None,
        stream_max_bytes: int = 0,
        stream_max_age: float = 0.0,
    ) -> None:
        self.url = url
        self.name = name
        self.service = service
        self.replicas = replicas
        # The limits of the streams this bus creates (0: none); never applied to existing ones.
        self.stream_max_bytes = stream_max_bytes
        self.stream_max_age = stream_max_age
        self.creds = creds
        self.ca_file = ca_file
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._reconnect_listeners: list[asyncio.Event] = []
        self._last_error = ""

    @classmethod
    def for_service(cls, settings: ServiceSettings, service: str, name: str | None = None) -> Bus:
        return cls(
            settings.nats_url,
            name or f"switchyard-{service}",
            service=service,
            replicas=settings.nats_replicas,
            creds=settings.nats_creds,
            ca_file=settings.nats_ca_file,
            stream_max_bytes=settings.stream_max_bytes,
            stream_max_age=settings.stream_max_age_days * 86_400,
        )

    def _connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.service:
            options["inbox_prefix"] = f"_INBOX.{self.service}"
        if self.creds is not None:
            options["user_credentials"] = str(self.creds)
        for url in server_urls(self.url):
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            if parts.username and parts.password:
                # Also for the servers the cluster announces (their URLs carry no credentials),
                # which a reconnection after a node loss may pick.
                options["user"], options["password"] = unquote(parts.username), unquote(parts.password)
                break
        if self.ca_file is not None or any(u.startswith("tls://") for u in server_urls(self.url)):
            options["tls"] = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        return options

    # --- connection ----------------------------------------------------------------------

    async def connect(self, *, deadline: float | None = None) -> None:
        """Connect, retrying the first connection until ``deadline`` seconds (forever if None).

        nats-py retries a first connection forever by itself when reconnection is unlimited;
        each attempt here is bounded instead, so a wrong password or an unreachable cluster is
        logged, and a caller with a deadline gets an error."""
        loop = asyncio.get_running_loop()
        give_up = None if deadline is None else loop.time() + deadline
        delay = 0.1
        while True:
            nc = NatsClient()
            window = 5.0 if give_up is None else max(min(5.0, give_up - loop.time()), 0.1)
            try:
                await asyncio.wait_for(
                    nc.connect(
                        server_urls(self.url),
                        name=self.name,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.25,  # type: ignore[arg-type]  # typed int, takes seconds as float
                        connect_timeout=2,
                        ping_interval=5,
                        max_outstanding_pings=3,
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnect,
                        reconnected_cb=self._on_reconnect,
                        **self._connect_options(),
                    ),
                    timeout=window,
                )
                self._nc = nc
                break
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                await _close_quietly(nc)
                reason = self._last_error or type(exc).__name__
                if give_up is not None and loop.time() >= give_up:
                    raise BusUnavailable(f"cannot connect to NATS at {redact(self.url)}: {reason}") from exc
                log.warning("waiting for NATS at %s (%s)", redact(self.url), reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._last_error = ""
        self._js = self._nc.jetstream(timeout=5)
        self._connection_state(1)
        log.info("connected to NATS at %s", redact(self.url))

    def _connection_state(self, up: int) -> None:
        if self.service:
            metrics.BUS_CONNECTED.labels(self.service).set(up)
            if not up:
                metrics.BUS_DISCONNECTS.labels(self.service).inc()

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = str(exc) or type(exc).__name__
        if isinstance(exc, nats.errors.AuthorizationError) or "authoriz" in str(exc).lower():
            log.warning("NATS refused the credentials of %s: %s", self.name, exc)
        elif "permissions violation" in str(exc).lower():
            log.error("NATS refused an operation of %s: %s", self.name, exc)
        else:
            log.debug("nats error: %s", exc)

    async def _on_disconnect(self) -> None:
        self._connection_state(0)
        if self._nc is not None and (self._nc.is_closed or self._nc.is_draining):
            log.info("disconnected from NATS (closing)")
        else:
            log.warning("disconnected from NATS")

    async def _on_reconnect(self) -> None:
        self._connection_state(1)
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

    async def close(self, timeout: float = 3.0) -> None:
        """Drain (stop taking requests, finish in-flight handlers, flush publishes) within
        ``timeout`` seconds, so a shutdown never hangs."""
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=max(timeout, 0.1))
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
        except nats.errors.MaxPayloadError as exc:  # the caller's doing: a 413, not an outage
            raise GatewayError(
                TOO_LARGE,
                f"The request is {len(payload)} bytes, more than the message bus carries "
                f"({self.nc.max_payload} bytes): send it in parts.",
            ) from exc
        except (nats.errors.Error, BusUnavailable) as exc:
            raise GatewayError(UNAVAILABLE, f"message bus unavailable: {exc}") from exc
        return msg.data

    async def gather(
        self,
        subject: str,
        message: BaseModel,
        reply_type: type[T],
        *,
        expect: set[str],
        who: Callable[[T], str],
        timeout: float,
    ) -> list[T]:
        """Ask every subscriber of ``subject`` and collect answers until each of ``expect``
        (named by ``who``) answered or ``timeout`` passed; errors and strays are skipped."""
        got: dict[str, T] = {}
        done = asyncio.Event()
        if not expect:
            return []

        async def on_reply(msg: Msg) -> None:
            try:
                reply = Reply.model_validate_json(msg.data)
                if not reply.ok:
                    return
                item = reply_type.model_validate(reply.data)
            except ValidationError:
                return
            got[who(item)] = item
            if expect <= got.keys():
                done.set()

        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, cb=on_reply)
        try:
            await self.nc.publish(subject, message.model_dump_json().encode(), reply=inbox)
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except TimeoutError:
                pass
        finally:
            await sub.unsubscribe()
        return list(got.values())

    async def serve(self, subject: str, queue: str | None, request_type: type[M], handler: Handler[M]) -> None:
        """Answer requests on ``subject`` in queue group ``queue`` (every subscriber answers
        when None) with ``handler``."""

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

        await self.nc.subscribe(subject, queue=queue or "", cb=on_msg)

    async def publish(self, subject: str, message: BaseModel) -> None:
        await self.nc.publish(subject, message.model_dump_json().encode())

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> None:
        await self.nc.subscribe(subject, cb=cb)

    # --- KV and JetStream ---------------------------------------------------------------

    async def kv(
        self, bucket: str, *, history: int = 1, create: bool = True, ttl: float | None = None, direct: bool = True
    ) -> KeyValue:
        """The bucket, created on first use (file storage, so it survives restarts) unless
        ``create`` is False: a reader waits for the bucket's owner to make it. With ``ttl``,
        an entry not written for that many seconds goes away. Without ``direct``, every read
        is answered by the stream's leader: in a cluster, a read that follows a write
        elsewhere sees it (a direct get may be answered by a replica that lags)."""
        try:
            return await self.js.key_value(bucket)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            if not create:
                raise
            return await self.js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=history,
                    storage=StorageType.FILE,
                    replicas=self.replicas,
                    ttl=ttl,
                    direct=direct,
                )
            )

    async def kv_keys(self, bucket: str) -> list[str]:
        """The keys a bucket has held (deleted ones too, until compacted: a read of one says
        it is gone), from one stream-info request to the stream's leader; none when the
        bucket does not exist. Not nats-py's ``kv.keys()``: its watcher may signal the end
        before the entries it was sent arrive (it compares a consumer-info count with what its
        callbacks have counted so far) and answer with too few keys, which listings met right
        after a create."""
        prefix = f"$KV.{bucket}."
        try:
            info = await self.js.stream_info(f"KV_{bucket}", subjects_filter=prefix + ">")
        except nats.js.errors.NotFoundError:
            return []
        return [subject[len(prefix) :] for subject in info.state.subjects or {}]

    async def kv_entries(self, bucket: str) -> dict[str, bytes]:
        """Every live entry of a bucket, read through the stream's leader: its keys
        (:meth:`kv_keys`), then the last message of each."""
        out: dict[str, bytes] = {}
        for key in await self.kv_keys(bucket):
            try:
                msg = await self.js.get_msg(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}")
            except nats.js.errors.NotFoundError:
                continue  # purged meanwhile
            operation = (msg.headers or {}).get("KV-Operation")
            if operation in ("DEL", "PURGE") or not msg.data:
                continue
            out[key] = msg.data
        return out

    async def ensure_kv(
        self, bucket: str, *, history: int = 1, ttl: float | None = None, direct: bool = True
    ) -> KeyValue:
        """The bucket its owner keeps: created if missing, its replicas raised to this
        connection's count (never lowered: an operator may have set more by hand), and its
        TTL, when it has one, set to ``ttl``."""
        kv = await self.kv(bucket, history=history, ttl=ttl, direct=direct)
        stream = f"KV_{bucket}"
        config = (await self.js.stream_info(stream)).config
        changed = False
        if (config.num_replicas or 1) < self.replicas:
            config.num_replicas = self.replicas
            changed = True
            log.info("bucket %s now has %d replicas", bucket, self.replicas)
        if ttl is not None and config.max_age is not None and abs(config.max_age - ttl) > 0.001:
            log.info("bucket %s: entries now live %g s (were %g s)", bucket, ttl, config.max_age)
            config.max_age = ttl
            changed = True
        if changed:
            await self.js.update_stream(config)
        return kv

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
        except (nats.errors.TimeoutError, TimeoutError):
            # nats-py raises the builtin TimeoutError when no answer to its pull request came
            # within the window: on an idle stream that is the same as "nothing arrived".
            return []
        except nats.errors.Error as exc:
            raise BusUnavailable(str(exc) or type(exc).__name__) from exc

    async def publish_durable(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        timeout: float = 5.0,
        replayed: bool = False,
        events: int | None = None,
        notes: int = 0,
    ) -> None:
        """Publish to JetStream and wait for the ack; ``msg_id`` lets the stream drop repeats
        within its duplicate window. ``replayed`` marks a message published before whose first
        publish may have been stored (its ack lost): its reader checks it against what it
        stored, as repeats past the window reach it. ``events`` marks a batch: that many
        events as JSON lines."""
        headers = {"Nats-Msg-Id": msg_id}
        if replayed:
            headers[REPLAYED_HEADER] = "1"
        if events is not None:
            headers[BATCH_HEADER] = str(events)
        if notes:
            headers[NOTES_HEADER] = str(notes)
        await self.js.publish(subject, payload, timeout=timeout, headers=headers)

    async def consumer_pending(self, stream: str, durable: str) -> int:
        """Messages the consumer has not had acknowledged yet (waiting plus in flight)."""
        info = await self.js.consumer_info(stream, durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def stream_messages(self, stream: str) -> int:
        return int((await self.js.stream_info(stream)).state.messages or 0)

    async def ensure_stream(
        self, name: str, subjects: list[str], *, work_queue: bool = False, duplicate_window: float = 600.0
    ) -> StreamConfig:
        """Create the stream, or add to an existing one only what Switchyard owns; returns
        the stream's configuration as it now is.

        A work queue keeps each message until its consumer acknowledges it, then drops it: events
        wait as long as their writer is down, and the stream does not grow once they are stored.
        A new stream is made with the size and age limits of ``GATEWAY_STREAM_MAX_BYTES`` and
        ``GATEWAY_STREAM_MAX_AGE_DAYS``; when full it refuses new messages (publishers keep them,
        an edge in its spool) rather than drop stored ones. Of an existing stream only its
        subjects (ours added, others kept) and its replicas (raised to what this service was
        asked for, never lowered) are changed: limits, retention, placement, the duplicate
        window and everything else an operator set stay as they are, across every restart.
        """
        try:
            existing = (await self.js.stream_info(name)).config
        except nats.js.errors.NotFoundError:
            config = StreamConfig(
                name=name,
                subjects=subjects,
                storage=StorageType.FILE,
                duplicate_window=duplicate_window,
                retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
                num_replicas=self.replicas,
                max_bytes=self.stream_max_bytes or -1,
                max_age=self.stream_max_age or None,
                discard=DiscardPolicy.NEW,
            )
            return (await self.js.add_stream(config)).config
        wanted = RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS
        if existing.retention != wanted:
            log.error(
                "stream %s has retention %s where Switchyard needs %s (a retention cannot change in place); "
                "left as it is: recreate the stream once it is empty",
                name,
                existing.retention,
                wanted,
            )
        missing = [s for s in subjects if s not in (existing.subjects or [])]
        replicas = max(self.replicas, existing.num_replicas or 1)
        if not missing and replicas == (existing.num_replicas or 1):
            return existing
        update = replace(existing, subjects=[*(existing.subjects or []), *missing], num_replicas=replicas)
        try:
            return (await self.js.update_stream(update)).config
        except nats.js.errors.APIError as exc:
            log.error(
                "stream %s keeps its existing settings (%s would be changed): %s", name, missing or "replicas", exc
            )
            return existing

    async def stream_state(self, stream: str) -> tuple[int, int, int]:
        """(messages, bytes, its byte limit; -1 for none) of a stream."""
        info = await self.js.stream_info(stream)
        return int(info.state.messages or 0), int(info.state.bytes or 0), int(info.config.max_bytes or -1)


async def _close_quietly(nc: NatsClient) -> None:
    try:
        await nc.close()
    except Exception as exc:  # a client that never connected has little to close
        log.debug("closing a failed NATS client: %s", exc)


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
        self.revision = 0  # the bucket's stream sequence the copy is current to
        self._advanced = asyncio.Event()
        self._on_change = on_change

    async def caught_up(self, timeout: float) -> bool:
        """Wait until the copy holds every change the bucket has now (read-your-writes: an admin
        change is in force here); False if it did not within ``timeout`` seconds."""
        info = await self.bus.js.stream_info(f"KV_{self.bucket}")
        target = int(info.state.last_seq or 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.revision < target:
            self._advanced.clear()
            try:
                await asyncio.wait_for(self._advanced.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                return self.revision >= target
        return True

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
                error = follow.exception()
                if isinstance(error, nats.js.errors.NotFoundError):  # its owner has not made it yet
                    log.info("waiting for bucket %s", self.bucket)
                else:
                    log.warning("watch on %s failed: %s; restarting", self.bucket, error)
                await asyncio.sleep(0.5)

    async def _follow(self) -> None:
        kv = await self.bus.kv(self.bucket, create=False)
        watcher = await kv.watchall()
        try:
            fresh: dict[str, bytes] | None = {}
            seen = 0
            async for entry in watcher:
                if entry is None:  # the bucket's current state is complete
                    if fresh is not None:
                        self._swap(fresh, seen)
                        fresh = None
                    continue
                seen = max(seen, int(entry.revision or 0))
                target = fresh if fresh is not None else dict(self.entries)
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    target.pop(entry.key, None)
                else:
                    target[entry.key] = entry.value
                if fresh is None:
                    self._swap(target, seen)
        finally:
            try:
                await watcher.stop()  # type: ignore[no-untyped-call]
            except Exception:  # the connection may be gone already
                pass

    def _swap(self, entries: dict[str, bytes], revision: int) -> None:
        self.entries = entries
        self._on_change(entries)
        self.revision = max(self.revision, revision)
        self._advanced.set()
        self.ready.set()
