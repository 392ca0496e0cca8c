"""Metrics, traces, logs and status of a stack whose edge runs two worker processes, with a
second edge beside it, JSON logs that rotate, a metrics token and an OTLP receiver."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from stack.launcher import Stack
from stack.settings import StackSettings
from tests.conftest import Simulators, launch, stack_environ, wait_until
from tests.servers import OtlpReceiver

METRICS_TOKEN = "metrics-" + secrets.token_hex(8)
LOG_MAX_BYTES = 64 * 1024


@dataclass
class Observed:
    stack: Stack
    otlp: OtlpReceiver
    origin: str  # the two-worker edge
    other: str  # the second edge
    admin_key: str
    logs: Path

    def admin(self, method: str, path: str, origin: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.admin_key}", **kwargs.pop("headers", {})}
        return httpx.request(method, (origin or self.origin) + path, headers=headers, timeout=30, **kwargs)

    def chat(self, model: str = "gpt-4o-mini", key: str | None = None, **extra: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.admin_key}", **extra.pop("headers", {})}
        body = {"model": model, "messages": [{"role": "user", "content": "observe me"}], **extra}
        return httpx.post(self.origin + "/v1/chat/completions", json=body, headers=headers, timeout=30)

    def metrics(self, origin: str | None = None) -> str:
        resp = httpx.get(
            (origin or self.origin) + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        return resp.text

    def log_lines(self, service: str) -> list[dict[str, Any]]:
        """Every line of a service's log and its rotated files, oldest first, as JSON."""
        files = sorted(self.logs.glob(f"{service}.log.*"), key=lambda p: -int(p.suffix[1:]))
        lines = []
        for path in [*files, self.logs / f"{service}.log"]:
            for line in path.read_text().splitlines():
                if line.startswith("{"):
                    lines.append(json.loads(line))
        return lines


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, sims: Simulators) -> Iterator[Observed]:
    otlp = OtlpReceiver()
    otlp.start()
    data = tmp_path_factory.mktemp("observed")
    settings = StackSettings(
        GATEWAY_DATA_DIR=data, GATEWAY_PORT=0, GATEWAY_EDGE_WORKERS=2, GATEWAY_LOG_MAX_BYTES=LOG_MAX_BYTES
    )
    environ = stack_environ(
        sims.openai,
        **sims.environ(),
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_METRICS_TOKEN=METRICS_TOKEN,
        GATEWAY_HEARTBEAT_SECONDS="1",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="switchyard-test",
    )
    stack = launch(settings, environ)
    try:
        assert stack.info is not None
        other = stack.add_edge("edge-2")
        yield Observed(stack, otlp, stack.info.base_url.removesuffix("/v1"), other, stack.info.admin_key, data / "logs")
    finally:
        stack.stop()
        otlp.stop()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 when the series does not exist)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_every_request_whatever_worker_served_it(observed: Observed) -> None:
    model = "gpt-4o-mini-obs"  # a name of its own: its series start at zero
    answers = [observed.chat(model) for _ in range(40)]  # a new connection each: both workers serve
    assert all(r.status_code == 200 for r in answers)
    served_by = {line["pid"] for line in observed.log_lines("edge") if line.get("path") == "/v1/chat/completions"}
    assert len(served_by) == 2, "both edge workers should have served requests"

    # Whichever worker answers the scrape, the counters hold every worker's requests (each
    # worker moves its counts into the shared files within a second).
    labels = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": model}
    wait_until(
        lambda: (
            _sample(observed.metrics(), "switchyard_requests_total", **labels, http_response_status_code="200") == 40
        ),
        what="every worker's counts",
    )
    for _ in range(4):
        text = observed.metrics()
        assert _sample(text, "switchyard_requests_total", **labels, http_response_status_code="200") == 40
        assert _sample(text, "gen_ai_server_request_duration_seconds_count", **labels) == 40
        assert _sample(text, "gen_ai_client_token_usage_count", **labels, gen_ai_token_type="input") == 40
        prompt = sum(r.json()["usage"]["prompt_tokens"] for r in answers)
        assert _sample(text, "gen_ai_client_token_usage_sum", **labels, gen_ai_token_type="input") == prompt
    assert _sample(text, "switchyard_cost_usd_total", **labels) == 0  # a name the catalog has no price for
    priced = {**labels, "gen_ai_request_model": "gpt-4o-mini"}
    assert observed.chat("gpt-4o-mini").status_code == 200
    wait_until(lambda: _sample(observed.metrics(), "switchyard_cost_usd_total", **priced) > 0, what="the cost")
    assert "user=" not in text and "client_key" not in text  # no per-user series by default
    assert _sample(text, "switchyard_bus_connected", service="edge") == 1

    # A stream records its time to first token.
    with OpenAI(base_url=observed.origin + "/v1", api_key=observed.admin_key, max_retries=0) as client:
        for _ in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True):
            pass
    wait_until(
        lambda: _sample(observed.metrics(), "gen_ai_server_time_to_first_token_seconds_count", **labels) == 1,
        what="the stream's time to first token",
    )


def test_metrics_want_the_token_and_every_service_has_them(observed: Observed) -> None:
    def refused(area: str) -> float:
        return _sample(observed.metrics(), "switchyard_http_requests_total", area=area, http_response_status_code="401")

    before_metrics, before_api = refused("metrics"), refused("model_api")
    assert httpx.get(observed.origin + "/metrics").status_code == 401
    wrong = httpx.get(observed.origin + "/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    assert observed.chat(key="sk-sy-not-a-key").status_code == 401  # refused before it is a model request
    # Both refusals are counted, whichever worker answers the scrape.
    wait_until(
        lambda: refused("metrics") - before_metrics == 2 and refused("model_api") - before_api == 1,
        what="the refusals to be counted",
    )
    health = observed.stack.info.health if observed.stack.info else {}
    for service in ("router", "keyvault", "metering"):
        assert httpx.get(health[service] + "/metrics").status_code == 401
        text = observed.metrics(health[service])
        assert _sample(text, "switchyard_bus_connected", service=service) == 1, service
        assert _sample(text, "switchyard_process_start_time_seconds", service=service, version="0.1.0") > 0
    keyvault = observed.metrics(health["keyvault"])
    assert "switchyard_vault_request_duration_seconds_count" in keyvault  # it has talked to Vault

    # Metering counts what it stored, and its lag returns to zero.
    resp = observed.chat("gpt-4o-mini-stored")
    assert resp.status_code == 200
    stored = _sample(observed.metrics(health["metering"]), "switchyard_usage_events_stored_total", table="usage_events")
    assert stored >= 1
    wait_until(
        lambda: (
            _sample(observed.metrics(health["metering"]), "switchyard_usage_pending") == 0
            and _sample(
                observed.metrics(health["metering"]), "switchyard_usage_events_stored_total", table="usage_events"
            )
            > stored - 1
        ),
        what="metering to catch up",
    )
    assert _sample(observed.metrics(health["metering"]), "switchyard_usage_dead_letters") == 0
    # How full each stream is, against the size limit it was made with (GATEWAY_STREAM_MAX_BYTES).
    text = observed.metrics(health["metering"])
    assert _sample(text, "switchyard_stream_max_bytes", stream="SWITCHYARD_USAGE") == 8 * 1024**3
    assert 0 <= _sample(text, "switchyard_stream_fill_ratio", stream="SWITCHYARD_USAGE") < 0.01
    ready = httpx.get(health["metering"] + "/readyz").json()
    assert ready["details"]["streams"]["SWITCHYARD_USAGE"]["max_bytes"] == 8 * 1024**3


def test_limits_upstream_errors_and_fallbacks_are_counted(observed: Observed) -> None:
    key = observed.admin("POST", "/ai/keys", json={"user": "obs-limited", "rpm": 1}).json()["key"]
    before = _sample(observed.metrics(), "switchyard_ratelimited_total", scope="key", limit="rpm")
    codes = [observed.chat(key=key).status_code for _ in range(3)]
    assert codes.count(429) >= 1  # two or more, unless a minute ended between the requests
    after = _sample(observed.metrics(), "switchyard_ratelimited_total", scope="key", limit="rpm")
    assert after - before == codes.count(429)

    put = observed.admin(
        "PUT",
        "/ai/routes/obs-fallback",
        json={"targets": ["openai/gpt-4o-status-503", "openai/gpt-4o"], "retry": {"attempts": 1}},
    )
    assert put.status_code == 200, put.text
    errors = _sample(observed.metrics(), "switchyard_upstream_errors_total", gen_ai_provider_name="openai", kind="503")
    resp = observed.chat("obs-fallback")
    assert resp.status_code == 200 and resp.json()["x_switchyard"]["attempts"] == 2
    text = observed.metrics()
    assert _sample(text, "switchyard_upstream_errors_total", gen_ai_provider_name="openai", kind="503") == errors + 1
    assert _sample(text, "switchyard_fallbacks_total", gen_ai_request_model="obs-fallback") == 1


def test_a_request_is_a_trace_that_continues_the_callers(observed: Observed) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    resp = observed.chat("gpt-4o-mini", headers={"traceparent": f"00-{trace_id}-{parent}-01"}, max_tokens=20)
    assert resp.status_code == 200
    wanted = bytes.fromhex(trace_id)

    def ours(spans: list[Any]) -> list[Any]:
        return [s for s in spans if s.trace_id == wanted]

    spans = ours(observed.otlp.wait_for(lambda spans: len(ours(spans)) >= 2))
    server = next(s for s in spans if s.kind == s.SPAN_KIND_SERVER)
    client = next(s for s in spans if s.kind == s.SPAN_KIND_CLIENT)
    assert server.parent_span_id == bytes.fromhex(parent)  # continues the caller's trace
    assert client.parent_span_id == server.span_id  # the upstream attempt is a child
    assert server.name == "chat gpt-4o-mini"
    attributes = {a.key: a.value for a in server.attributes}
    assert attributes["gen_ai.operation.name"].string_value == "chat"
    assert attributes["gen_ai.provider.name"].string_value == "openai"
    assert attributes["gen_ai.request.model"].string_value == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"].string_value
    assert attributes["gen_ai.request.max_tokens"].int_value == 20
    usage = resp.json()["usage"]
    assert attributes["gen_ai.usage.input_tokens"].int_value == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"].int_value == usage["completion_tokens"]
    assert [v.string_value for v in attributes["gen_ai.response.finish_reasons"].array_value.values] == ["stop"]
    assert attributes["switchyard.request_id"].string_value == resp.headers["x-request-id"]
    client_attributes = {a.key: a.value for a in client.attributes}
    assert client_attributes["server.address"].string_value == "127.0.0.1"
    # Prompts and completions stay out of traces unless a setting says otherwise.
    every_value = json.dumps([str(a.value) for s in spans for a in s.attributes])
    assert "observe me" not in every_value and "gen_ai.input.messages" not in every_value

    # The trace id is in the usage event.
    def metered() -> list[dict[str, Any]]:
        log = observed.admin("GET", "/ai/usage/requests", params={"period": "24h", "limit": 50}).json()["data"]
        return [r for r in log if r["request_id"] == resp.headers["x-request-id"]]

    wait_until(lambda: bool(metered()), what="the request to be metered")
    assert metered()[0]["trace_id"] == trace_id


def test_json_logs_with_request_ids_and_an_access_line_per_request(observed: Observed) -> None:
    mine = "client-chosen-" + secrets.token_hex(4)
    kept = observed.chat(headers={"x-request-id": mine})
    assert kept.status_code == 200 and kept.headers["x-request-id"] == mine
    made = observed.chat(headers={"x-request-id": "not a usable id!"})
    assert re.fullmatch(r"req_[0-9a-f]{32}", made.headers["x-request-id"])
    bad = observed.chat("no-such-model-anywhere")
    assert bad.status_code == 404 and bad.headers["x-request-id"].startswith("req_")

    def access(request_id: str) -> list[dict[str, Any]]:
        return [
            line
            for line in observed.log_lines("edge")
            if line.get("logger") == "switchyard.access" and line.get("request_id") == request_id
        ]

    wait_until(lambda: all(access(r.headers["x-request-id"]) for r in (kept, made, bad)), what="the access lines")
    line = access(mine)[0]
    assert line["level"] == "INFO" and line["service"] == "edge" and isinstance(line["pid"], int)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", line["time"])
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/chat/completions", 200)
    assert (line["model"], line["provider"]) == ("gpt-4o-mini", "openai")
    assert line["prompt_tokens"] == kept.json()["usage"]["prompt_tokens"] and line["latency_ms"] > 0
    assert access(bad.headers["x-request-id"])[0]["status"] == 404
    # Metering's log is JSON as well, and the events keep the client's id apart from their own.
    assert all("service" in entry for entry in observed.log_lines("metering"))


def test_logs_rotate_by_size_without_splitting_lines(observed: Observed) -> None:
    def rotated() -> bool:
        return (observed.logs / "edge.log.1").exists()

    while not rotated():  # each request adds an access line (~400 bytes): the log grows to its limit
        assert observed.chat().status_code == 200
    for path in observed.logs.glob("edge.log*"):
        text = path.read_text()
        longest = max(len(line) + 1 for line in text.splitlines())
        assert path.stat().st_size <= LOG_MAX_BYTES + longest  # past the limit by less than a line
        assert text.endswith("\n") or path.name == "edge.log"
        for line in text.splitlines():
            if line.startswith("{"):
                json.loads(line)  # whole lines only


def test_status_lists_every_service_instance_and_readyz_names_what_is_missing(observed: Observed) -> None:
    def instances() -> list[dict[str, Any]]:
        resp = observed.admin("GET", "/ai/status", observed.other)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["instances"])

    wait_until(lambda: sum(1 for i in instances() if i["service"] == "edge") == 3, what="three edge processes")
    found = instances()
    assert {i["service"] for i in found} == {"edge", "router", "keyvault", "metering"}
    for instance in found:
        assert instance["version"] == "0.1.0" and instance["state"] == "up" and instance["ready"]
        assert instance["uptime_seconds"] > 0 and instance["seconds_since_heartbeat"] < 5
    user_key = observed.admin("POST", "/ai/keys", json={"user": "obs-user"}).json()["key"]
    wait_until(lambda: observed.chat(key=user_key).status_code == 200, what="the user key on the edge")
    assert observed.admin("GET", "/ai/status", headers={"authorization": f"Bearer {user_key}"}).status_code == 403

    ready = httpx.get(observed.origin + "/readyz").json()
    assert ready["status"] == "ready" and ready["missing"] == []
    observed.stack.supervisor.stop("metering")
    try:
        wait_until(
            lambda: httpx.get(observed.origin + "/readyz").json()["missing"] == ["metering"], what="readyz to say so"
        )
        assert httpx.get(observed.origin + "/readyz").status_code == 503
    finally:
        observed.stack.supervisor.start("metering")
    wait_until(lambda: httpx.get(observed.origin + "/readyz").status_code == 200, what="metering back")


def test_idle_services_log_no_warnings(observed: Observed) -> None:
    """Ten heartbeats of metering (one a second here) without a request: no warning anywhere."""
    health = observed.stack.info.health if observed.stack.info else {}
    wait_until(lambda: httpx.get(health["metering"] + "/readyz").status_code == 200, what="metering ready")

    def beats() -> float:
        found = observed.admin("GET", "/ai/status").json()["instances"]
        return max(i["last_heartbeat"] for i in found if i["service"] == "metering")

    marks = {service: len(observed.log_lines(service)) for service in ("router", "keyvault", "metering", "edge")}
    first = beats()
    wait_until(lambda: beats() - first >= 10, timeout=60, what="ten seconds of heartbeats")
    for service, start in marks.items():
        new = observed.log_lines(service)[start:]
        loud = [line for line in new if line["level"] in ("WARNING", "ERROR", "CRITICAL")]
        assert not loud, f"{service} logged while idle: {loud}"
