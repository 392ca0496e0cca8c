"""The edge's Prometheus metrics, named after the OpenTelemetry GenAI semantic conventions
(``gen_ai.server.request.duration`` is ``gen_ai_server_request_duration_seconds`` here).

Recorded once per request when it ends (services/edge/telemetry.py), from its usage event.
Labels carry no key or user unless ``GATEWAY_METRICS_USER_LABELS`` is set: a label per user
is a time series per user, which a large deployment's Prometheus may not want.

A request adds to counts held in this process (a few additions); :meth:`EdgeMetrics.flush`
moves them into the metrics once a second and before this worker answers a scrape. With
several workers each update of a metric is a write to a file they share, eight of them per
request: gathered, a second's worth of requests costs one write per bucket that changed. So
another worker's requests show up in a scrape within a second.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from shared.events import UsageEvent

# The semantic conventions' bucket boundaries.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

# gen_ai.provider.name's well-known values, for the providers that have one.
PROVIDER_NAMES = {"gemini": "gcp.gemini", "azure": "azure.ai.openai", "xai": "x_ai", "mistral": "mistral_ai"}
# gen_ai.operation.name for each endpoint.
OPERATIONS = {"chat.completions": "chat", "messages": "chat", "embeddings": "embeddings"}

_GENAI = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"]
_USER = ["user", "project"]


# The HTTP areas of switchyard_http_requests_total (a bounded label, whatever paths clients try).
_AREAS = (
    ("/v1/", "model_api"),
    ("/ai/v1/", "model_api"),
    ("/ai/", "admin_api"),
    ("/ui", "dashboard"),
    ("/metrics", "metrics"),
    ("/healthz", "health"),
    ("/readyz", "health"),
)


def _area(path: str) -> str:
    for prefix, area in _AREAS:
        if path.startswith(prefix):
            return area
    return "other"


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


class _Count:
    """What a counter series gained since the last flush."""

    __slots__ = ("child", "pending")

    def __init__(self, child: Counter) -> None:
        self.child = child
        self.pending = 0.0

    def flush(self) -> None:
        if self.pending:
            self.child.inc(self.pending)
            self.pending = 0.0


class _Buckets:
    """What a histogram series observed since the last flush: a count per bucket and the sum,
    added to the histogram's own bucket values (prometheus_client keeps one value per bucket,
    as ``observe`` does, and the count is their total)."""

    __slots__ = ("bounds", "child", "counts", "dirty", "total")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.dirty = False

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket with value <= bound
        self.total += value
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        self.child._sum.inc(self.total)
        for i, count in enumerate(self.counts):
            if count:
                self.child._buckets[i].inc(count)
                self.counts[i] = 0
        self.total, self.dirty = 0.0, False


_Series = tuple[_Buckets, _Buckets, _Buckets, _Buckets, _Count, _Count]


class EdgeMetrics:
    """The edge's metrics objects. Label sets seen before are looked up in one dictionary, so
    a request costs a handful of increments."""

    def __init__(self, *, user_labels: bool = False, registry: CollectorRegistry = REGISTRY) -> None:
        self.user_labels = user_labels
        extra = _USER if user_labels else []
        self.duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Time from a request's arrival to its last byte (streams: to the end of the stream)",
            [*_GENAI, "http_response_status_code", "error_type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first token, for successful streams",
            _GENAI,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request, by type (input, output)",
            [*_GENAI, "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "switchyard_requests_total",
            "Model requests answered, by status",
            [*_GENAI, "http_response_status_code", *extra],
            registry=registry,
        )
        self.cost = Counter(
            "switchyard_cost_usd_total",
            "Cost of the requests answered, at catalog prices (metering's ClickHouse rows are the bill)",
            [*_GENAI, *extra],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "switchyard_upstream_errors_total",
            "Upstream attempts that failed, by provider and kind (429, 5xx status, timeout, connect, keys, ...)",
            ["gen_ai_provider_name", "kind"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "switchyard_fallbacks_total",
            "Requests that moved on from a failing target to the next one of their route",
            ["gen_ai_request_model", "from_provider", "to_provider"],
            registry=registry,
        )
        self.ratelimited = Counter(
            "switchyard_ratelimited_total",
            "Requests refused by a limit or budget, by scope and limit",
            ["scope", "limit"],
            registry=registry,
        )
        self.http = Counter(
            "switchyard_http_requests_total",
            "Every HTTP request the edge answered, by area (model API, admin API, dashboard, ...) and "
            "status: refusals before a request is a model request (a bad key, a bad body) are here",
            ["area", "http_response_status_code"],
            registry=registry,
        )
        self._series: dict[tuple[str, ...], _Series] = {}
        self._http: dict[tuple[str, int], _Count] = {}

    def observe(self, event: UsageEvent, cost: float) -> None:
        operation = OPERATIONS.get(event.endpoint, event.endpoint)
        provider = provider_name(event.provider)
        status = str(event.status)
        # A request that was never routed names no model the gateway knows: one label value
        # for all of them, however many names clients invent.
        model = event.requested_model if event.model else "_unrouted"
        key = (operation, provider, model, status, event.error_type, event.user, event.project)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._labels(*key)
        duration, ttft, tokens_in, tokens_out, requests, spent = series
        duration.add(event.latency_ms / 1000)
        if event.stream and event.status == 200 and event.ttft_ms > 0:
            ttft.add(event.ttft_ms / 1000)
        if event.status == 200 or event.prompt_tokens or event.completion_tokens:
            tokens_in.add(event.prompt_tokens)
            if operation != "embeddings":
                tokens_out.add(event.completion_tokens)
        requests.pending += 1
        spent.pending += cost

    def _labels(
        self, operation: str, provider: str, model: str, status: str, error: str, user: str, project: str
    ) -> _Series:
        genai = (operation, provider, model)
        who = (user, project) if self.user_labels else ()
        return (
            _Buckets(self.duration.labels(*genai, status, error)),
            _Buckets(self.ttft.labels(*genai)),
            _Buckets(self.tokens.labels(*genai, "input")),
            _Buckets(self.tokens.labels(*genai, "output")),
            _Count(self.requests.labels(*genai, status, *who)),
            _Count(self.cost.labels(*genai, *who)),
        )

    def answered(self, path: str, status: int) -> None:
        area = _area(path)
        count = self._http.get((area, status))
        if count is None:
            count = self._http[(area, status)] = _Count(self.http.labels(area, str(status)))
        count.pending += 1

    def flush(self) -> None:
        """Move what this process counted into the metrics (and so, with several workers, into
        the files a scrape reads)."""
        for series in self._series.values():
            for part in series:
                part.flush()
        for count in self._http.values():
            count.flush()

    async def keep_flushing(self, every: float = 1.0) -> None:
        try:
            while True:
                await asyncio.sleep(every)
                self.flush()
        finally:
            self.flush()  # what the last requests counted, on the way out

    def upstream_failed(self, provider: str, kind: str) -> None:
        self.upstream_errors.labels(provider_name(provider), kind).inc()

    def fell_back(self, model: str, from_provider: str, to_provider: str) -> None:
        self.fallbacks.labels(model, provider_name(from_provider), provider_name(to_provider)).inc()

    def refused(self, scope: str, limit: str) -> None:
        self.ratelimited.labels(scope, limit).inc()


_metrics: EdgeMetrics | None = None


def edge_metrics(*, user_labels: bool) -> EdgeMetrics:
    """This process's metrics (made once: a metric name exists once per process)."""
    global _metrics
    if _metrics is None:
        _metrics = EdgeMetrics(user_labels=user_labels)
    return _metrics
