"""The router service: compiles the catalog and the routing configuration (file and admin
API) into the route table, keeps every target's circuit state from the edges' reports,
publishes the table, and confirms admin changes with every live edge."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import socket
import time
from typing import Literal

from pydantic import ValidationError

from services.router.circuits import Circuits
from services.router.compile import catalog_listing, compile_routes
from services.router.config_file import ConfigFile
from services.router.settings import RouterSettings
from shared import subjects
from shared.bus import Bus, KVMirror, Msg
from shared.catalog import RouteTable, load_catalog
from shared.errors import CONFLICT, INVALID_REQUEST, NOT_FOUND, GatewayError
from shared.gateway_config import Account, ConfigError, GatewayConfig, VirtualModel
from shared.messages import (
    AccountObject,
    AccountPut,
    ByName,
    CatalogListing,
    ConfigObjects,
    Empty,
    HealthReport,
    Ping,
    RouteObject,
    RoutePut,
    SyncAck,
    SyncRequest,
    SyncResult,
)

log = logging.getLogger("switchyard.router")

_ROUTE, _ACCOUNT = "route.", "account."
_Section = Literal["models", "accounts"]
_KEY_PREFIX: dict[str, str] = {"models": _ROUTE, "accounts": _ACCOUNT}
_KIND = {"models": "route", "accounts": "account"}


class Router:
    def __init__(self, settings: RouterSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.instance = f"router-{socket.gethostname()}-{os.getpid()}"
        self.catalog = load_catalog()
        self.file = ConfigFile(settings.config_path)
        self.api = GatewayConfig()  # the routes and accounts admins put through the API
        self.circuits = Circuits(settings.circuit_failures, settings.circuit_open_seconds)
        self.compiled_on = dt.datetime.now(dt.UTC).date()
        candidate = self.file.read()
        if candidate is not None:  # a file refused at start leaves the gateway running without it
            try:
                self._compile(candidate.config, self.api)
                self.file.accept(candidate)
            except ConfigError as exc:
                self.file.refuse_candidate(candidate, exc)
        self.table: RouteTable = self._compile(self.file.config, self.api)
        self.stored = KVMirror(bus, subjects.CONFIG_BUCKET, self._stored_changed)
        self._publish_soon = asyncio.Event()
        self._circuits_changed = False  # since this router last wrote the table
        self._tasks: list[asyncio.Task[None]] = []

    def _compile(self, file: GatewayConfig, api: GatewayConfig) -> RouteTable:
        table = compile_routes(
            self.catalog,
            self.settings.base_url_overrides(),
            self.settings.self_hosted(),
            self.settings.api_versions(),
            file.merged(api),
            locations=self.settings.locations(),
        )
        table.circuits = self.circuits.snapshot()
        return table

    def recompile(self) -> None:
        """Rebuild the table from what is in force now (a refusal here keeps the old table)."""
        try:
            self.table = self._compile(self.file.config, self.api)
        except ConfigError as exc:  # e.g. an API route whose target an edited file removed
            log.error("routing configuration does not compile, the running table stays: %s", exc)
            return
        self.compiled_on = dt.datetime.now(dt.UTC).date()
        self._publish_soon.set()

    async def start(self) -> None:
        await self.bus.ensure_kv(subjects.ROUTES_BUCKET)  # created, its replicas raised, once
        await self.bus.ensure_kv(subjects.CONFIG_BUCKET)
        self._tasks.append(asyncio.create_task(self.stored.run(), name="config-bucket"))
        await asyncio.wait_for(self.stored.ready.wait(), timeout=30)
        serve = self.bus.serve
        await serve(subjects.ROUTER_PING, subjects.QUEUE_ROUTER, Empty, self.ping)
        await serve(subjects.ROUTER_MODELS, subjects.QUEUE_ROUTER, Empty, self.models)
        await serve(subjects.ROUTES_LIST, subjects.QUEUE_ROUTER, Empty, self.list_routes)
        await serve(subjects.ROUTES_PUT, subjects.QUEUE_ROUTER, RoutePut, self.put_route)
        await serve(subjects.ROUTES_DELETE, subjects.QUEUE_ROUTER, ByName, self.delete_route)
        await serve(subjects.ACCOUNTS_LIST, subjects.QUEUE_ROUTER, Empty, self.list_accounts)
        await serve(subjects.ACCOUNTS_PUT, subjects.QUEUE_ROUTER, AccountPut, self.put_account)
        await serve(subjects.ACCOUNTS_DELETE, subjects.QUEUE_ROUTER, ByName, self.delete_account)
        await serve(subjects.ROUTER_SYNC, subjects.QUEUE_ROUTER, SyncRequest, self.sync)
        await self.bus.subscribe(subjects.ROUTER_HEALTH, self._on_health)  # every router hears every edge
        await self.publish_table()

    # --- the table ---------------------------------------------------------------------------

    async def publish_table(self) -> None:
        """Write the table if the bucket's copy differs (also heals a lost or stale bucket).
        A copy that differs only in circuit state another router published is left alone
        unless this router's circuits changed since it last wrote (routers do not take turns
        rewriting the table with their own timestamps)."""
        kv = await self.bus.kv(subjects.ROUTES_BUCKET)
        payload = self.table.model_dump_json(exclude_defaults=True).encode()  # every edge parses it: lean
        try:
            current = await kv.get(subjects.ROUTES_KEY)
            if current.value == payload:
                self._circuits_changed = False
                return
            if (
                not self._circuits_changed
                and current.value is not None
                and _same_but_circuits(current.value, self.table)
            ):
                return
        except Exception:  # key not there yet
            pass
        await kv.put(subjects.ROUTES_KEY, payload)
        self._circuits_changed = False
        log.info(
            "published route table: %d providers, %d models, %d virtual models, catalog %s",
            len(self.table.providers),
            len(self.table.models),
            len(self.table.virtual),
            self.table.catalog_version,
        )

    async def table_published(self) -> bool:
        """The bucket holds this router's table (a readiness check). Circuit state is left out
        of the comparison: another router may have published what it heard a moment earlier."""
        kv = await self.bus.kv(subjects.ROUTES_BUCKET)
        raw = (await kv.get(subjects.ROUTES_KEY)).value
        if raw is None:
            return False
        return _same_but_circuits(raw, self.table)

    async def keep_published(self, stop: asyncio.Event) -> None:
        """Every second: circuits whose time is up, the configuration file, the date (a model
        retires at midnight UTC); at once when something changed; the whole table again every
        ``republish_interval`` (heals a lost bucket)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.hangup)
        last_full = loop.time()
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(self._publish_soon.wait(), timeout=self.settings.config_poll_seconds)
                except TimeoutError:
                    pass
                due = self._publish_soon.is_set() or loop.time() - last_full >= self.settings.republish_interval
                self._publish_soon.clear()
                if stop.is_set():
                    break
                self.reload()
                if self.circuits.tick(time.time()):
                    self._circuits_changed = True
                    self.recompile()
                elif dt.datetime.now(dt.UTC).date() != self.compiled_on:
                    self.recompile()
                due = due or self._publish_soon.is_set()
                if not due:
                    continue
                self._publish_soon.clear()
                try:
                    await self.publish_table()
                    last_full = loop.time()
                except Exception as exc:  # bus down: try again next round
                    self._publish_soon.set()
                    log.warning("could not publish the route table: %s", exc)
                    await asyncio.sleep(1.0)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def hangup(self) -> None:
        log.info("SIGHUP: reading the configuration file %s", self.file.path)
        self.reload(force=True)

    def reload(self, *, force: bool = False) -> None:
        """Read the configuration file if it changed; put it in force if it is valid."""
        candidate = self.file.read(force=force)
        if candidate is None:
            return
        try:
            table = self._compile(candidate.config, self.api)
        except ConfigError as exc:
            self.file.refuse_candidate(candidate, exc)
            return
        self.file.accept(candidate)
        self.table = table
        self._publish_soon.set()

    # --- health --------------------------------------------------------------------------------

    async def _on_health(self, msg: Msg) -> None:
        try:
            report = HealthReport.model_validate_json(msg.data)
        except ValidationError:
            return
        if self.circuits.record(report, time.time()):
            self.table = self.table.model_copy(update={"circuits": self.circuits.snapshot()})
            self._circuits_changed = True
            self._publish_soon.set()

    # --- read-your-writes ----------------------------------------------------------------------

    async def sync(self, request: SyncRequest) -> SyncResult:
        """Ask every live edge to confirm it applies the latest change of ``kind``. (The router
        that made a route change published the table before it answered; this one may be
        another router, which must not publish the table it holds: it may not have the change.)"""
        live = self.circuits.live_edges(time.time())
        acks = await self.bus.gather(
            subjects.EDGE_SYNC,
            request,
            SyncAck,
            expect=live,
            who=lambda a: a.instance,
            timeout=self.settings.sync_timeout,
        )
        confirmed = sorted(a.instance for a in acks if a.ok)
        return SyncResult(kind=request.kind, confirmed=confirmed, missing=sorted(live - set(confirmed)))

    # --- routes and accounts through the admin API ----------------------------------------------

    def _stored_changed(self, entries: dict[str, bytes]) -> None:
        routes: dict[str, VirtualModel] = {}
        accounts: dict[str, Account] = {}
        for key, raw in entries.items():
            try:
                if key.startswith(_ROUTE):
                    routes[key.removeprefix(_ROUTE)] = VirtualModel.model_validate_json(raw)
                elif key.startswith(_ACCOUNT):
                    accounts[key.removeprefix(_ACCOUNT)] = Account.model_validate_json(raw)
            except ValidationError as exc:
                log.error("ignoring stored %s: %s", key, exc)
        stored = GatewayConfig(accounts=accounts, models=routes)
        if stored == self.api:
            return  # this router's own change, already in force (put/delete compiled it)
        self.api = stored
        self.recompile()

    def _objects(self, kind: Literal["route", "account"]) -> list[RouteObject] | list[AccountObject]:
        if kind == "route":
            routes = [RouteObject(name=n, source="file", spec=v) for n, v in self.file.config.models.items()]
            routes += [RouteObject(name=n, source="api", spec=v) for n, v in self.api.models.items()]
            return sorted(routes, key=lambda o: o.name)
        accounts = [AccountObject(name=n, source="file", spec=v) for n, v in self.file.config.accounts.items()]
        accounts += [AccountObject(name=n, source="api", spec=v) for n, v in self.api.accounts.items()]
        return sorted(accounts, key=lambda o: o.name)

    async def list_routes(self, _: Empty) -> ConfigObjects:
        path = str(self.file.path or "")
        return ConfigObjects(data=self._objects("route"), config_file=path, config_error=self.file.error)

    async def list_accounts(self, _: Empty) -> ConfigObjects:
        path = str(self.file.path or "")
        return ConfigObjects(data=self._objects("account"), config_file=path, config_error=self.file.error)

    async def put_route(self, request: RoutePut) -> RouteObject:
        await self._put("models", request.name, request.spec)
        return RouteObject(name=request.name, source="api", spec=request.spec)

    async def put_account(self, request: AccountPut) -> AccountObject:
        await self._put("accounts", request.name, request.spec)
        return AccountObject(name=request.name, source="api", spec=request.spec)

    async def delete_route(self, request: ByName) -> RouteObject:
        spec = await self._delete("models", request.name)
        assert isinstance(spec, VirtualModel)
        return RouteObject(name=request.name, source="api", spec=spec)

    async def delete_account(self, request: ByName) -> AccountObject:
        spec = await self._delete("accounts", request.name)
        assert isinstance(spec, Account)
        return AccountObject(name=request.name, source="api", spec=spec)

    async def _put(self, section: _Section, name: str, spec: VirtualModel | Account) -> None:
        self._not_in_file(section, name)
        objects = {**getattr(self.api, section), name: spec}
        candidate = self.api.model_copy(update={section: objects})
        await self._store(candidate, _KEY_PREFIX[section] + name, spec.model_dump_json())

    async def _delete(self, section: _Section, name: str) -> VirtualModel | Account:
        self._not_in_file(section, name)
        objects = dict(getattr(self.api, section))
        spec: VirtualModel | Account | None = objects.pop(name, None)
        if spec is None:
            raise GatewayError(NOT_FOUND, f"No {_KIND[section]} named {name!r}.")
        await self._store(self.api.model_copy(update={section: objects}), _KEY_PREFIX[section] + name, None)
        return spec

    def _not_in_file(self, section: _Section, name: str) -> None:
        if name in getattr(self.file.config, section):
            raise GatewayError(
                CONFLICT,
                f"{name!r} is defined in the configuration file {self.file.path}; change it there.",
            )

    async def _store(self, candidate: GatewayConfig, key: str, value: str | None) -> None:
        """Check that the API's objects with this change compile with the file's, then store
        the change and put it in force here at once (other routers follow the bucket)."""
        try:
            candidate = GatewayConfig.model_validate(candidate.model_dump())  # names checked
            table = self._compile(self.file.config, candidate)
        except (ConfigError, ValidationError) as exc:
            raise GatewayError(INVALID_REQUEST, str(exc).splitlines()[0]) from exc
        kv = await self.bus.kv(subjects.CONFIG_BUCKET)
        if value is None:
            await kv.delete(key)
        else:
            await kv.put(key, value.encode())
        self.api, self.table = candidate, table
        await self.publish_table()

    # --- catalog --------------------------------------------------------------------------------

    async def ping(self, _: Empty) -> Ping:
        return Ping(service="router", instance=self.instance)

    async def models(self, _: Empty) -> CatalogListing:
        return CatalogListing(catalog_version=self.table.catalog_version, data=catalog_listing(self.table))


def _same_but_circuits(raw: bytes, table: RouteTable) -> bool:
    try:
        published = RouteTable.model_validate_json(raw).model_dump(exclude={"circuits"})
    except ValidationError:
        return False
    return published == table.model_dump(exclude={"circuits"})
