"""The edge's metrics from usage events (services/edge/metrics.py) and the /metrics token
(shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from services.edge.metrics import EdgeMetrics, edge_metrics, provider_name
from shared import metrics
from shared.events import UsageEvent


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_request_is_counted_once_with_its_tokens_duration_and_cost() -> None:
    m = edge_metrics(user_labels=False)
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "gcp.gemini", "gen_ai_request_model": "g-unit"}
    event = UsageEvent(
        event_id="req_1",
        ts=0,
        endpoint="chat.completions",
        provider="gemini",
        requested_model="g-unit",
        model="gemini-x",
        user="alice",
        stream=True,
        prompt_tokens=12,
        completion_tokens=30,
        latency_ms=250.0,
        ttft_ms=40.0,
    )
    m.observe(event, 0.5)
    m.observe(event, 0.25)
    assert _value("switchyard_requests_total", **genai, http_response_status_code="200") == 0  # not yet flushed
    m.flush()
    assert _value("switchyard_requests_total", **genai, http_response_status_code="200") == 2
    assert _value("switchyard_cost_usd_total", **genai) == 0.75
    assert _value("gen_ai_client_token_usage_sum", **genai, gen_ai_token_type="output") == 60
    assert _value("gen_ai_server_time_to_first_token_seconds_count", **genai) == 2
    assert _value("gen_ai_server_request_duration_seconds_bucket", **genai, http_response_status_code="200",
                  error_type="", le="0.32") == 2  # fmt: skip

    # Never routed (an invented model name): one series for all such names, no user label.
    for name in ("invented-1", "invented-2"):
        m.observe(event.model_copy(update={"model": "", "requested_model": name, "status": 404}), 0.0)
    m.flush()
    unrouted = {**genai, "gen_ai_request_model": "_unrouted"}
    assert _value("switchyard_requests_total", **unrouted, http_response_status_code="404") == 2
    assert _value("gen_ai_server_time_to_first_token_seconds_count", **unrouted) == 0  # failures have no TTFT
    assert all("user" not in s.labels for f in REGISTRY.collect() for s in f.samples if s.name.startswith("switch"))


def test_provider_names_follow_the_semantic_conventions() -> None:
    assert [provider_name(p) for p in ("openai", "gemini", "azure", "xai", "mistral", "echo")] == [
        "openai",
        "gcp.gemini",
        "azure.ai.openai",
        "x_ai",
        "mistral_ai",
        "echo",
    ]


def test_the_metrics_token_is_a_bearer_token() -> None:
    assert metrics.authorized(None, "")  # open without a token
    assert metrics.authorized("Bearer s3cret", "s3cret") and metrics.authorized("bearer  s3cret", "s3cret")
    assert not metrics.authorized(None, "s3cret")
    assert not metrics.authorized("Bearer wrong", "s3cret") and not metrics.authorized("Basic s3cret", "s3cret")


def test_user_labels_only_when_asked() -> None:
    registry = CollectorRegistry()
    m = EdgeMetrics(user_labels=True, registry=registry)
    event = UsageEvent(event_id="r", ts=0, endpoint="embeddings", provider="openai", requested_model="e",
                       model="e", user="bob", project="p1", prompt_tokens=5)  # fmt: skip
    m.observe(event, 0.1)
    m.flush()
    labels = {"gen_ai_operation_name": "embeddings", "gen_ai_provider_name": "openai", "gen_ai_request_model": "e"}
    assert (
        registry.get_sample_value(
            "switchyard_requests_total", {**labels, "http_response_status_code": "200", "user": "bob", "project": "p1"}
        )
        == 1
    )
    assert registry.get_sample_value("switchyard_cost_usd_total", {**labels, "user": "bob", "project": "p1"}) == 0.1
    # Embeddings have no output tokens to count.
    assert registry.get_sample_value("gen_ai_client_token_usage_count", {**labels, "gen_ai_token_type": "output"}) in (
        None,
        0,
    )


def test_every_http_answer_is_counted_by_a_bounded_area() -> None:
    registry = CollectorRegistry()
    m = EdgeMetrics(registry=registry)
    for path, status in [("/v1/chat/completions", 401), ("/ai/v1/embeddings", 401), ("/ai/keys", 200),
                         ("/ui/app.js", 200), ("/wp-admin/../../etc/passwd", 404), ("/.env", 404)]:  # fmt: skip
        m.answered(path, status)
    m.flush()

    def count(area: str, status: str) -> float | None:
        return registry.get_sample_value(
            "switchyard_http_requests_total", {"area": area, "http_response_status_code": status}
        )

    assert count("model_api", "401") == 2 and count("admin_api", "200") == 1 and count("dashboard", "200") == 1
    assert count("other", "404") == 2  # paths clients invent share one series


def test_gathered_observations_make_the_same_histogram_as_observing_each(tmp_path: object) -> None:
    """The flush adds counts straight to the histogram's bucket values: the exposition must be
    what prometheus_client's own observe() makes, boundaries included (a value equal to a bound
    is in that bucket)."""
    from prometheus_client import Histogram, generate_latest

    from services.edge.metrics import DURATION_BUCKETS, _Buckets

    values = [0.0, 0.01, 0.015, 0.02, 0.3, 0.32, 0.33, 5.12, 81.92, 100.0, 0.004] * 3
    direct, gathered = CollectorRegistry(), CollectorRegistry()
    one = Histogram("h", "h", ["x"], buckets=DURATION_BUCKETS, registry=direct).labels("a")
    many = _Buckets(Histogram("h", "h", ["x"], buckets=DURATION_BUCKETS, registry=gathered).labels("a"))
    for value in values:
        one.observe(value)
        many.add(value)
    many.flush()
    many.flush()  # nothing new: adds nothing
    assert generate_latest(gathered) == generate_latest(direct)
