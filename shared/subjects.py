"""NATS subject, stream and bucket names: the bus contract between services."""

from __future__ import annotations

PREFIX = "switchyard"

# JetStream: usage events, one message per request.
USAGE_STREAM = "SWITCHYARD_USAGE"
USAGE_SUBJECT = f"{PREFIX}.usage.v1"
USAGE_SUBJECTS = f"{PREFIX}.usage.>"
AUDIT_STREAM = "SWITCHYARD_AUDIT"
AUDIT_SUBJECT = f"{PREFIX}.audit.v1"
AUDIT_DURABLE = "metering-audit"
AUDIT_LIST = f"{PREFIX}.metering.audit.list"
USAGE_DEAD_LETTER = f"{PREFIX}.usage_dlq.v1"
USAGE_DLQ_STREAM = "SWITCHYARD_USAGE_DLQ"
METERING_DURABLE = "metering"

# KV buckets watched by every edge.
ROUTES_BUCKET = "switchyard_routes"
ROUTES_KEY = "table"
CLIENT_KEYS_BUCKET = "switchyard_client_keys"
# Projects (keyvault's): what client keys belong to; later, their limits and budgets.
PROJECTS_BUCKET = "switchyard_projects"
# Users' limits (keyvault's); keys' limits are in their records, projects' in theirs.
USERS_BUCKET = "switchyard_users"
# The routes and accounts admins manage through the API (the router's; edges never read it).
CONFIG_BUCKET = "switchyard_config"
# Stored Responses API responses (keyvault makes it with their TTL; edges read and write it).
RESPONSES_BUCKET = "switchyard_responses"

# Request-reply (queue groups so each service scales out).
ROUTER_MODELS = f"{PREFIX}.router.models"
ROUTER_PING = f"{PREFIX}.router.ping"
ROUTES_LIST = f"{PREFIX}.router.routes.list"
ROUTES_PUT = f"{PREFIX}.router.routes.put"
ROUTES_DELETE = f"{PREFIX}.router.routes.delete"
ACCOUNTS_LIST = f"{PREFIX}.router.accounts.list"
ACCOUNTS_PUT = f"{PREFIX}.router.accounts.put"
ACCOUNTS_DELETE = f"{PREFIX}.router.accounts.delete"
# Edges publish what they saw of each target (and so say they are alive) to every router.
ROUTER_HEALTH = f"{PREFIX}.router.health"
# Read-your-writes: the router asks every live edge to confirm it applies a change.
ROUTER_SYNC = f"{PREFIX}.router.sync"
EDGE_SYNC = f"{PREFIX}.edge.sync"
# An edge refused for want of quota asks the edges holding leases on that counter to hand
# back what they do not use (docs/limits.md).
EDGE_RECLAIM = f"{PREFIX}.edge.quota.reclaim"
# Every service process says it is alive on STATUS_HEARTBEAT.<service> (and at once when an
# edge asks on STATUS_ANNOUNCE); edges keep the list /ai/status shows.
STATUS_HEARTBEAT = f"{PREFIX}.status.heartbeat"
STATUS_ANNOUNCE = f"{PREFIX}.status.announce"

KEYVAULT_PING = f"{PREFIX}.keyvault.ping"
PROVIDER_KEYS_CREATE = f"{PREFIX}.keyvault.provider_keys.create"
PROVIDER_KEYS_STATUS = f"{PREFIX}.keyvault.provider_keys.status"
PROVIDER_KEYS_ROTATE = f"{PREFIX}.keyvault.provider_keys.rotate_encryption"
KEYVAULT_TRANSPORT_KEY = f"{PREFIX}.keyvault.transport_key"
PROVIDER_KEYS_LIST = f"{PREFIX}.keyvault.provider_keys.list"
PROVIDER_KEYS_DELETE = f"{PREFIX}.keyvault.provider_keys.delete"
PROVIDER_KEYS_FETCH = f"{PREFIX}.keyvault.provider_keys.fetch"
PROVIDER_KEYS_CHANGED = f"{PREFIX}.keyvault.provider_keys.changed"
CLIENT_KEYS_CREATE = f"{PREFIX}.keyvault.client_keys.create"
CLIENT_KEYS_LIST = f"{PREFIX}.keyvault.client_keys.list"
CLIENT_KEYS_DELETE = f"{PREFIX}.keyvault.client_keys.delete"
CLIENT_KEYS_PATCH = f"{PREFIX}.keyvault.client_keys.patch"
CLIENT_KEYS_GET = f"{PREFIX}.keyvault.client_keys.get"
PROJECTS_CREATE = f"{PREFIX}.keyvault.projects.create"
PROJECTS_LIST = f"{PREFIX}.keyvault.projects.list"
PROJECTS_PATCH = f"{PREFIX}.keyvault.projects.patch"
PROJECTS_DELETE = f"{PREFIX}.keyvault.projects.delete"
USERS_PUT = f"{PREFIX}.keyvault.users.put"
USERS_LIST = f"{PREFIX}.keyvault.users.list"
USERS_DELETE = f"{PREFIX}.keyvault.users.delete"

METERING_PING = f"{PREFIX}.metering.ping"
USAGE_SUMMARY = f"{PREFIX}.metering.usage.summary"
USAGE_KEYS_LAST_USED = f"{PREFIX}.metering.usage.provider_keys_last_used"
USAGE_TIMESERIES = f"{PREFIX}.metering.usage.timeseries"
USAGE_REQUESTS = f"{PREFIX}.metering.usage.requests"
USAGE_PERFORMANCE = f"{PREFIX}.metering.usage.performance"
METERING_STATUS = f"{PREFIX}.metering.status"
PRICES_LIST = f"{PREFIX}.metering.prices.list"
PRICES_SET = f"{PREFIX}.metering.prices.set"
PRICES_CHANGED = f"{PREFIX}.metering.prices.changed"
# What a budget's scope spent in a period, from the metered events (an edge opening a counter).
BUDGET_SPENT = f"{PREFIX}.metering.budget.spent"

QUEUE_ROUTER = "router"
QUEUE_KEYVAULT = "keyvault"
QUEUE_METERING = "metering"

# Prices set at run time, as every edge holds them (metering's; shared.messages.PricesInForce).
PRICES_BUCKET = "switchyard_prices"
PRICES_KEY = "in_force"
CATALOG_LOAD = f"{PREFIX}.metering.catalog.load"
USAGE_RECOST = f"{PREFIX}.metering.usage.recost"
