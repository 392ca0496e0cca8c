"""NATS users and permissions: each service connects as its own user and may publish and
subscribe only where its work needs it.

The table below is the one place the permissions are written: the embedded server's
configuration, ``deploy/nats/auth.conf`` (docker compose and Kubernetes) and the README's table
are all made from it (``python -m stack.nats_auth`` prints the deploy file).

What it guarantees: an edge cannot write the client-key or route buckets, cannot read
requests addressed to keyvault, router or metering, and cannot touch the usage stream but by
publishing events; a service's reply inboxes are ``_INBOX.<service>.>``, which only that
service may read. Edges share one user, so one edge could read another edge's inbox: what
keyvault sends there is sealed to the asking edge's ephemeral key.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from shared import subjects as s
from shared.limits import BUDGET_BUCKET, RATE_BUCKET

SERVICES = ("router", "keyvault", "metering", "edge")
ADMIN = "admin"  # operators and tests: every subject (the `nats` CLI, debugging)


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool  # may answer the requests it receives (NATS allow_responses)


def _stream_manage(stream: str) -> list[str]:
    """Create the stream and raise its settings (never delete or purge it)."""
    return [f"$JS.API.STREAM.{verb}.{stream}" for verb in ("CREATE", "UPDATE", "INFO")]


def _stream_read(stream: str) -> list[str]:
    """Read it through consumers (KV watches, pull consumers) and direct gets; acknowledge."""
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _kv(bucket: str) -> str:
    return f"KV_{bucket}"


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Grant:
    """One thing a user may do: what it is for, and the subjects that takes."""

    what: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()


def _grants() -> dict[str, list[Grant]]:
    routes, client_keys, config = _kv(s.ROUTES_BUCKET), _kv(s.CLIENT_KEYS_BUCKET), _kv(s.CONFIG_BUCKET)
    projects, users = _kv(s.PROJECTS_BUCKET), _kv(s.USERS_BUCKET)
    rate, budgets = _kv(RATE_BUCKET), _kv(BUDGET_BUCKET)
    responses = _kv(s.RESPONSES_BUCKET)
    prices = _kv(s.PRICES_BUCKET)
    js = Grant("JetStream account info", ("$JS.API.INFO",))

    def inbox(user: str) -> Grant:
        return Grant(f"read replies to its own requests (`_INBOX.{user}.>`)", subscribe=(f"_INBOX.{user}.>",))

    def heartbeat(user: str) -> Grant:
        return Grant(
            f"say it is alive (`{s.STATUS_HEARTBEAT}.{user}`, also when asked on `{s.STATUS_ANNOUNCE}`)",
            (f"{s.STATUS_HEARTBEAT}.{user}",),
            subscribe=(s.STATUS_ANNOUNCE,),
        )

    return {
        "router": [
            Grant(f"answer `{s.PREFIX}.router.*`", subscribe=(f"{s.PREFIX}.router.>",)),
            Grant(
                f"own the route bucket `{s.ROUTES_BUCKET}` (create, raise replicas, read, write)",
                (*_stream_manage(routes), *_stream_read(routes), f"$KV.{s.ROUTES_BUCKET}.>"),
            ),
            Grant(
                f"own the bucket of routes and accounts made through the API `{s.CONFIG_BUCKET}`",
                (*_stream_manage(config), *_stream_read(config), f"$KV.{s.CONFIG_BUCKET}.>"),
            ),
            Grant(f"ask every edge to confirm an admin change (`{s.EDGE_SYNC}`)", (s.EDGE_SYNC,)),
            heartbeat("router"),
            js,
            inbox("router"),
        ],
        "keyvault": [
            Grant(f"answer `{s.PREFIX}.keyvault.*`", subscribe=(f"{s.PREFIX}.keyvault.>",)),
            Grant(
                f"own the client-key bucket `{s.CLIENT_KEYS_BUCKET}` (create, raise replicas, read, write)",
                (*_stream_manage(client_keys), *_stream_read(client_keys), f"$KV.{s.CLIENT_KEYS_BUCKET}.>"),
            ),
            Grant(
                f"own the project bucket `{s.PROJECTS_BUCKET}` (create, raise replicas, read, write)",
                (*_stream_manage(projects), *_stream_read(projects), f"$KV.{s.PROJECTS_BUCKET}.>"),
            ),
            Grant(
                f"own the bucket of users' limits `{s.USERS_BUCKET}` (create, raise replicas, read, write)",
                (*_stream_manage(users), *_stream_read(users), f"$KV.{s.USERS_BUCKET}.>"),
            ),
            Grant(
                f"make the quota buckets `{RATE_BUCKET}` and `{BUDGET_BUCKET}` (create, raise replicas)",
                (*_stream_manage(rate), *_stream_manage(budgets)),
            ),
            Grant(
                f"make the stored-responses bucket `{s.RESPONSES_BUCKET}` and set its TTL (create, update)",
                tuple(_stream_manage(responses)),
            ),
            Grant(f"announce provider-key changes (`{s.PROVIDER_KEYS_CHANGED}`)", (s.PROVIDER_KEYS_CHANGED,)),
            Grant(
                "read (watch) the route table, for accounts' names and the provider APIs it probes keys at",
                tuple(_stream_read(routes)),
            ),
            Grant(
                f"publish audit events (`{s.AUDIT_SUBJECT}`; create the `{s.AUDIT_STREAM}` stream)",
                (*_stream_manage(s.AUDIT_STREAM), s.AUDIT_SUBJECT),
            ),
            heartbeat("keyvault"),
            js,
            inbox("keyvault"),
        ],
        "metering": [
            Grant(f"answer `{s.PREFIX}.metering.*`", subscribe=(f"{s.PREFIX}.metering.>",)),
            Grant(
                f"own and consume the `{s.USAGE_STREAM}` and `{s.AUDIT_STREAM}` streams (durable consumers, acks)",
                (
                    *_stream_manage(s.USAGE_STREAM),
                    *_stream_read(s.USAGE_STREAM),
                    *_stream_manage(s.AUDIT_STREAM),
                    *_stream_read(s.AUDIT_STREAM),
                ),
            ),
            Grant(
                f"dead-letter poison events (`{s.USAGE_DEAD_LETTER}`, stream `{s.USAGE_DLQ_STREAM}`)",
                (*_stream_manage(s.USAGE_DLQ_STREAM), s.USAGE_DEAD_LETTER),
            ),
            Grant(f"announce price changes (`{s.PRICES_CHANGED}`)", (s.PRICES_CHANGED,)),
            Grant(
                f"own the bucket of prices in force `{s.PRICES_BUCKET}` (create, raise replicas, read, write)",
                (*_stream_manage(prices), *_stream_read(prices), f"$KV.{s.PRICES_BUCKET}.>"),
            ),
            Grant(
                f"raise budget counters to the metered spend (read and write `{BUDGET_BUCKET}`)",
                (*_stream_read(budgets), f"$KV.{BUDGET_BUCKET}.>"),
            ),
            Grant(
                f"hear the edges' heartbeats (`{s.STATUS_HEARTBEAT}.edge`: the requests of an edge that died "
                "are billed at their reservation)",
                subscribe=(f"{s.STATUS_HEARTBEAT}.edge",),
            ),
            heartbeat("metering"),
            js,
            inbox("metering"),
        ],
        "edge": [
            Grant(
                f"publish usage and audit events (`{s.USAGE_SUBJECT}`, `{s.AUDIT_SUBJECT}`; "
                f"create the `{s.AUDIT_STREAM}` stream)",
                (s.USAGE_SUBJECT, s.AUDIT_SUBJECT, *_stream_manage(s.AUDIT_STREAM)),
            ),
            Grant(
                "read (watch) the route, client-key, project, user and price buckets, never write them",
                (
                    *_stream_read(routes),
                    *_stream_read(client_keys),
                    *_stream_read(projects),
                    *_stream_read(users),
                    *_stream_read(prices),
                ),
            ),
            Grant(
                f"lease quota: read and compare-and-set the counters in `{RATE_BUCKET}` and `{BUDGET_BUCKET}`, "
                f"and ask other edges for unused quota (`{s.EDGE_RECLAIM}`, answered)",
                (
                    *_stream_read(rate),
                    f"$KV.{RATE_BUCKET}.>",
                    *_stream_read(budgets),
                    f"$KV.{BUDGET_BUCKET}.>",
                    s.EDGE_RECLAIM,
                ),
                subscribe=(s.EDGE_RECLAIM,),
            ),
            Grant(
                f"keep Responses API responses: read, write and delete entries of `{s.RESPONSES_BUCKET}`",
                (*_stream_read(responses), f"$KV.{s.RESPONSES_BUCKET}.>"),
            ),
            Grant(
                "send requests to router, keyvault and metering (admin API, provider keys, readiness)",
                (f"{s.PREFIX}.router.>", f"{s.PREFIX}.keyvault.>", f"{s.PREFIX}.metering.>"),
            ),
            Grant(
                f"hear provider-key changes (`{s.PROVIDER_KEYS_CHANGED}`) and the router's requests to "
                f"confirm admin changes (`{s.EDGE_SYNC}`, answered), and no other service subject",
                subscribe=(s.PROVIDER_KEYS_CHANGED, s.EDGE_SYNC),
            ),
            heartbeat("edge"),
            Grant(
                f"hear every service's heartbeat for /ai/status (`{s.STATUS_HEARTBEAT}.>`) and ask for them",
                (s.STATUS_ANNOUNCE,),
                subscribe=(f"{s.STATUS_HEARTBEAT}.>",),
            ),
            js,
            inbox("edge"),
        ],
    }


def permissions() -> dict[str, Permissions]:
    out = {}
    for user, grants in _grants().items():
        out[user] = Permissions(
            publish=_unique([x for g in grants for x in g.publish]),
            subscribe=_unique([x for g in grants for x in g.subscribe]),
            responds=True,  # each answers the requests it may hear (NATS allow_responses)
        )
    return out


def markdown() -> str:
    """The README's permission table (made from the same grants as the server's config)."""
    rows = ["| NATS user | may (and nothing else) |", "| --- | --- |"]
    for user, grants in _grants().items():
        rows.append(f"| `{user}` | {'; '.join(g.what for g in grants)} |")
    rows.append(f"| `{ADMIN}` | every subject (operators: the `nats` CLI; tests) |")
    return "\n".join(rows) + "\n"


def _quoted(items: tuple[str, ...]) -> str:
    return ", ".join(json.dumps(item) for item in items)


def authorization(passwords: dict[str, str]) -> str:
    """The server's ``authorization`` block. A password may be a literal or a ``$VARIABLE``
    the server reads from its environment (docker compose, Kubernetes)."""

    def value(password: str) -> str:
        return password if password.startswith("$") else json.dumps(password)

    lines = ["authorization {", "  users = ["]
    for user, perms in permissions().items():
        lines += [
            f"    {{user: {json.dumps(user)}, password: {value(passwords[user])}, permissions: {{",
            f"      publish: {{allow: [{_quoted(perms.publish)}]}},",
            f"      subscribe: {{allow: [{_quoted(perms.subscribe)}]}},",
            *([f"      allow_responses: {str(perms.responds).lower()}"] if perms.responds else []),
            "    }},",
        ]
    lines += [f"    {{user: {json.dumps(ADMIN)}, password: {value(passwords[ADMIN])}}}", "  ]", "}"]
    return "\n".join(lines) + "\n"


def load_or_create(path: Path) -> dict[str, str]:
    """The users' passwords, made on first start and kept (mode 0600) in the data dir."""
    if path.exists():
        stored = dict(json.loads(path.read_text()))
        if set(stored) >= {*SERVICES, ADMIN}:
            return {str(k): str(v) for k, v in stored.items()}
    passwords = {user: secrets.token_urlsafe(24) for user in (*SERVICES, ADMIN)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh)
    os.chmod(path, 0o600)
    return passwords


def with_user(urls: str, user: str, password: str) -> str:
    """The comma-separated URLs, each carrying the user and password."""
    out = []
    for url in urls.split(","):
        parts = urlsplit(url.strip())
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
        out.append(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
    return ",".join(out)


def password_variable(user: str) -> str:
    return f"NATS_{user.upper()}_PASSWORD"


def deploy_file() -> str:
    """``deploy/nats/auth.conf``: the same users, passwords read from the server's environment."""
    env = {user: "$" + password_variable(user) for user in (*SERVICES, ADMIN)}
    header = "# Generated by `python -m stack.nats_auth` from stack/nats_auth.py: do not edit by hand.\n"
    return header + authorization(env)


if __name__ == "__main__":
    sys.stdout.write(deploy_file())
