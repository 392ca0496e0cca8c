"""Edge settings."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from shared.keyfile import private_file_problem
from shared.settings import ServiceSettings

if TYPE_CHECKING:
    from shared.identity import EdgeIdentity


class EdgeSettings(ServiceSettings):
    port: int = Field(default=8080, ge=0, le=65535, validation_alias="GATEWAY_PORT")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=64, validation_alias="GATEWAY_EDGE_WORKERS"
    )
    admin_key: SecretStr = Field(default=SecretStr(""), validation_alias="GATEWAY_ADMIN_KEY")
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, validation_alias="GATEWAY_MAX_BODY_BYTES")
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, validation_alias="GATEWAY_MAX_HEADER_BYTES")
    # How long a client may take to send a request's headers (from its first byte, or from the
    # connection for the first request), and then its body: past either, 408 and the
    # connection is closed (a client that trickles bytes holds no connection for long).
    # Peers whose X-Forwarded-For / X-Forwarded-Proto name the client (a load balancer in front
    # of the edges): addresses or networks, comma-separated, or "*". None by default: a client
    # cannot choose the address the audit log and access lines record.
    trusted_proxies: str = Field(default="", validation_alias="GATEWAY_TRUSTED_PROXIES")
    header_timeout: float = Field(default=10.0, gt=0, validation_alias="GATEWAY_HEADER_READ_TIMEOUT_SECONDS")
    body_timeout: float = Field(default=60.0, gt=0, validation_alias="GATEWAY_BODY_READ_TIMEOUT_SECONDS")
    upstream_timeout: float = Field(default=600.0, gt=0, validation_alias="GATEWAY_UPSTREAM_TIMEOUT_SECONDS")
    upstream_connect_timeout: float = Field(
        default=10.0, gt=0, validation_alias="GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS"
    )
    upstream_max_connections: int = Field(default=1000, ge=1, validation_alias="GATEWAY_UPSTREAM_MAX_CONNECTIONS")
    # Streams one client key may hold open on one edge process (services/edge/streams.py): half
    # the upstream pool, so no key can starve the others.
    max_streams_per_key: int = Field(default=500, ge=1, validation_alias="GATEWAY_MAX_STREAMS_PER_KEY")
    # The edge's identity (an Ed25519 private key, PEM, mode 0600): keyvault delivers provider
    # keys only to fetches it signs, if its public key is in keyvault's registry (shared/identity.py).
    identity_file: Path | None = Field(default=None, validation_alias="GATEWAY_EDGE_IDENTITY_FILE")
    provider_key_ttl: float = Field(default=300.0, gt=0, validation_alias="GATEWAY_PROVIDER_KEY_TTL_SECONDS")
    instance_name: str = Field(default_factory=socket.gethostname, validation_alias="GATEWAY_INSTANCE_NAME")
    # Where this edge runs, as responses' x_switchyard.region say (a deployment's own name).
    region: str = Field(default="local", max_length=64, validation_alias="GATEWAY_REGION")
    # How often the edge reports what it saw of each target to the router (also its heartbeat).
    health_report_seconds: float = Field(default=1.0, gt=0, le=30, validation_alias="GATEWAY_HEALTH_REPORT_SECONDS")
    # Image URLs the gateway fetches itself for providers that cannot (Gemini): public
    # addresses only, within these limits; GATEWAY_MEDIA_FETCH_ALLOW lists host:port pairs
    # that may be fetched although not public (an internal image server).
    media_fetch_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, validation_alias="GATEWAY_MEDIA_FETCH_MAX_BYTES"
    )
    media_fetch_timeout: float = Field(default=10.0, gt=0, validation_alias="GATEWAY_MEDIA_FETCH_TIMEOUT_SECONDS")
    media_fetch_allow: str = Field(default="", validation_alias="GATEWAY_MEDIA_FETCH_ALLOW")
    # Limits and budgets (docs/limits.md): how long a lease on a budget or in-flight counter
    # lives unless renewed, what share of the room left a lease takes at once, after how long
    # without requests unused quota goes back, how long the edge waits for a counter, whether
    # it admits requests when the counters cannot be reached (fail-open) or refuses them once
    # its leases are spent (fail-closed, the default), and the completion tokens reserved for
    # a request that sets no max_tokens.
    lease_seconds: float = Field(default=15.0, ge=1, le=600, validation_alias="GATEWAY_LIMITS_LEASE_SECONDS")
    lease_fraction: float = Field(default=0.25, gt=0, le=1, validation_alias="GATEWAY_LIMITS_LEASE_FRACTION")
    lease_idle_return: float = Field(default=1.0, gt=0, le=60, validation_alias="GATEWAY_LIMITS_IDLE_RETURN_SECONDS")
    limits_timeout: float = Field(default=2.0, gt=0, le=30, validation_alias="GATEWAY_LIMITS_TIMEOUT_SECONDS")
    limits_fail_open: bool = Field(default=False, validation_alias="GATEWAY_LIMITS_FAIL_OPEN")
    default_max_output_tokens: int = Field(
        default=16_384, ge=1, validation_alias="GATEWAY_LIMITS_DEFAULT_MAX_OUTPUT_TOKENS"
    )

    # Observability (docs/observability.md): user and project labels on the request and cost
    # counters (one time series per user: off by default), prompts and completions in trace
    # spans (off by default).
    metrics_user_labels: bool = Field(default=False, validation_alias="GATEWAY_METRICS_USER_LABELS")
    otel_capture_content: bool = Field(default=False, validation_alias="GATEWAY_OTEL_CAPTURE_CONTENT")

    def identity_problem(self) -> str | None:
        """What keeps the identity file from being used, checked without loading the key (the
        edge's parent, which serves nothing, stays without the cryptography library)."""
        if self.identity_file is None:
            return (
                "GATEWAY_EDGE_IDENTITY_FILE is not set: keyvault gives provider keys only to an edge whose "
                "identity it knows (`python -m shared.identity new NAME DIR`, docs/security.md)"
            )
        problem = private_file_problem(self.identity_file)
        return None if problem is None else f"edge identity: {problem}"

    def identity(self) -> EdgeIdentity:
        from shared.identity import EdgeIdentity, IdentityError

        problem = self.identity_problem()
        if problem is not None:
            raise IdentityError(problem)
        assert self.identity_file is not None
        return EdgeIdentity.load(self.identity_file)

    def media_fetch_allowed(self) -> frozenset[tuple[str, int]]:
        pairs = set()
        for item in self.media_fetch_allow.split(","):
            host, sep, port = item.strip().rpartition(":")
            if sep and host and port.isdigit():
                pairs.add((host.strip("[]"), int(port)))
        return frozenset(pairs)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"
