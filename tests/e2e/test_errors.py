"""Every error case answers in OpenAI's shape with the right status, so the SDK raises the
matching exception."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Gateway, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


def _post(
    gateway: Gateway, content: bytes | None = None, json: object = None, key: str | None = None
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key or gateway.info.admin_key}", "content-type": "application/json"}
    return httpx.post(
        gateway.info.base_url + "/chat/completions", content=content, json=json, headers=headers, timeout=30
    )


def _assert_error(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


def test_bad_key_is_401(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        gateway.client("sk-sy-not-a-real-key").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert exc.value.code == "invalid_api_key"
    resp = httpx.get(gateway.info.base_url + "/models")
    _assert_error(resp, 401, "invalid_api_key")


def test_unknown_model_is_404_model_not_found(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        gateway.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert exc.value.code == "model_not_found"
    assert exc.value.param == "model"


def test_malformed_json_is_400(gateway: Gateway) -> None:
    _assert_error(_post(gateway, content=b'{"model": "gpt-4o", "messages": ['), 400, "invalid_json")
    _assert_error(_post(gateway, content=b"[1, 2]"), 400, "invalid_json")
    _assert_error(_post(gateway, content=b""), 400, "invalid_json")


def test_missing_or_wrong_fields_are_400(gateway: Gateway) -> None:
    _assert_error(_post(gateway, json={"messages": MESSAGES}), 400, "missing_required_parameter", "model")
    _assert_error(_post(gateway, json={"model": "gpt-4o"}), 400, "missing_required_parameter", "messages")
    _assert_error(_post(gateway, json={"model": 5, "messages": MESSAGES}), 400, param="model")
    _assert_error(_post(gateway, json={"model": "gpt-4o", "messages": []}), 400, param="messages")
    _assert_error(_post(gateway, json={"model": "gpt-4o", "messages": ["hi"]}), 400, param="messages[0]")
    _assert_error(_post(gateway, json={"model": "gpt-4o", "messages": MESSAGES, "stream": "yes"}), 400, param="stream")
    with pytest.raises(openai.BadRequestError):
        gateway.client().chat.completions.create(model="gpt-4o", messages=[])


def test_oversized_body_is_413(gateway: Gateway) -> None:
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    _assert_error(_post(gateway, json=big), 413, "request_too_large")

    # Without a Content-Length (chunked), the limit holds while reading.
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}]}'

    resp = httpx.post(
        gateway.info.base_url + "/chat/completions",
        content=chunks(),
        headers={"authorization": f"Bearer {gateway.info.admin_key}", "content-type": "application/json"},
        timeout=30,
    )
    _assert_error(resp, 413, "request_too_large")


def test_upstream_server_error_is_502(gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        gateway.client().chat.completions.create(model="gpt-sim-status-500", messages=MESSAGES)
    assert exc.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as exc:
        gateway.client().chat.completions.create(model="gpt-sim-status-500", messages=MESSAGES, stream=True)
    assert exc.value.status_code == 502


def test_upstream_rate_limit_keeps_status_and_retry_after(gateway: Gateway) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        gateway.client().chat.completions.create(model="gpt-sim-status-429", messages=MESSAGES)
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.code == "rate_limit_exceeded"


def test_upstream_timeout_is_504(gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        gateway.client().chat.completions.create(model="gpt-sim-slow", messages=MESSAGES)
    assert exc.value.status_code == 504
    assert exc.value.code == "upstream_timeout"


def test_unreachable_upstream_is_502(gateway: Gateway) -> None:
    # The test stack points GROQ_BASE_URL at a loopback port where nothing listens.
    with pytest.raises(openai.APIStatusError) as exc:
        gateway.client().chat.completions.create(model="groq/llama-3.3-70b-versatile", messages=MESSAGES)
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_error"


def test_provider_without_a_key_is_a_clear_503(gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        gateway.client().chat.completions.create(model="grok-4", messages=MESSAGES)
    assert exc.value.status_code == 503
    assert "POST /ai/providers/keys" in exc.value.message


def test_truncated_stream_ends_with_an_error_not_a_finish(gateway: Gateway) -> None:
    stream = gateway.client().chat.completions.create(model="gpt-sim-truncate", messages=MESSAGES, stream=True)
    seen = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            seen.append(chunk)
    assert "ended before it finished" in str(exc.value)
    assert seen and all(c.choices[0].finish_reason is None for c in seen)


def test_unknown_path_and_method(gateway: Gateway) -> None:
    _assert_error(httpx.get(gateway.origin + "/v1/nope"), 404)
    resp = httpx.get(
        gateway.info.base_url + "/chat/completions", headers={"authorization": f"Bearer {gateway.info.admin_key}"}
    )
    _assert_error(resp, 405)


def test_oversized_headers_are_413(gateway: Gateway) -> None:
    resp = httpx.post(
        gateway.info.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gateway.info.admin_key}", "x-padding": "p" * 40_000},
        json={"model": "echo/x", "messages": MESSAGES},
    )
    _assert_error(resp, 413, "request_too_large")


def test_deeply_nested_json_is_400_not_500(gateway: Gateway) -> None:
    deep = b'{"model": "echo/x", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _assert_error(_post(gateway, content=deep), 400, "invalid_json")


def test_hostile_shapes_get_clear_errors(gateway: Gateway) -> None:
    for body in (
        {"model": "echo/x", "messages": [{"role": 5}]},
        {"model": "echo/x", "messages": {"role": "user"}},
        {"model": ["gpt-4o"], "messages": MESSAGES},
        {"model": "echo/x", "messages": MESSAGES, "user": 42},
        {"model": "echo/x", "messages": MESSAGES, "stream_options": "yes"},
    ):
        _assert_error(_post(gateway, json=body), 400)
    _assert_error(_post(gateway, content=b"\xff\xfe garbage"), 400, "invalid_json")


def test_upstream_error_mid_stream_reaches_the_client_as_an_error(gateway: Gateway) -> None:
    key = gateway.new_user_key("uma")
    stream = gateway.client(key).chat.completions.create(
        model="gpt-sim-midstream-error", messages=MESSAGES, stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            seen.append(chunk)
    assert "simulated overload" in str(exc.value)
    assert len(seen) == 4 and all(c.choices[0].finish_reason is None for c in seen)  # role + three words
    # Metered as a failed stream, not a success.
    wait_until(lambda: gateway.requests_metered("uma") == 1, what="the event")
    row = gateway.admin("GET", "/ai/usage/requests", params={"user": "uma"}).json()["data"][0]
    assert row["status"] == 502 and row["error_type"] == "upstream_error" and row["stream"] is True


def test_lone_surrogates_are_refused_at_the_door_and_metering_goes_on(gateway: Gateway) -> None:
    """A lone UTF-16 surrogate (``\\ud800``) cannot be written as Unicode: accepted, it failed the
    request's usage event and, with it, the edge's publishing. It is a 400 naming where it is;
    emoji sent as surrogate pairs (as Python's json.dumps spells them) pass."""
    key = gateway.new_user_key("surrogate-sue")
    for raw, where in (
        (rb'{"model": "gpt-4o", "user": "\ud800", "messages": [{"role": "user", "content": "hi"}]}', "at user"),
        (rb'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi \uDFFF"}]}', "messages[0].content"),
        (rb'{"model": "echo/\ud800", "messages": [{"role": "user", "content": "hi"}]}', "at model"),
    ):
        error = _assert_error(_post(gateway, content=raw, key=key), 400)
        assert error["type"] == "invalid_request_error" and where in error["message"], error
    emoji = rb'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi \ud83d\ude00"}]}'
    assert _post(gateway, content=emoji, key=key).status_code == 200
    gateway.client(key).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    wait_until(lambda: gateway.requests_metered("surrogate-sue") >= 2, what="the two answered requests metered")
    assert gateway.requests_metered("surrogate-sue") == 2  # refused at the door: no event


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-flash/../gemini-2.5-pro",  # a path segment: reached Pro with a key for Flash
        "gemini/../../v1beta/tunedModels/x",
        "azure/gpt-4o?api-version=2000-01-01#",  # the deployment's query and fragment
        "echo/a%2F..%2Fb",
        "gpt-4o\n",
        "x" * 300,
    ],
)
def test_model_names_that_would_change_the_upstream_url_are_400(gateway: Gateway, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        gateway.client().chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
    assert exc.value.param == "model"


def test_what_a_client_names_or_sends_oddly_is_a_400_never_a_500(gateway: Gateway) -> None:
    """Each of these was a 500 (or an empty reply after the upstream call was made)."""
    key = gateway.new_user_key("odd-olga")
    for start in ("-5", "1900-01-01T00:00:00Z"):
        resp = gateway.admin("GET", "/ai/usage/summary", key=key, params={"from": start})
        _assert_error(resp, 400, param="from")
    for path in ("/ai/keys/" + "k" * 300, "/ai/projects/" + "p" * 300, "/ai/users/" + "u" * 300):
        _assert_error(gateway.admin("DELETE", path), 400)
    # Found by the fuzzer (tests/e2e/test_fuzz.py): characters no id or name has reached
    # keyvault (a Vault path, a bucket key) and came back as 500s.
    for method, path in (
        ("PATCH", "/ai/providers/keys/%0B%05%C2%A7"),
        ("DELETE", "/ai/providers/keys/pk_.."),
        ("DELETE", "/ai/projects/a%40b"),
        ("PATCH", "/ai/projects/" + "0" * 100),
    ):
        _assert_error(gateway.admin(method, path, json={"status": "active"}), 400)
    # A window that ends before a period fits after the epoch starts at the epoch (was a 503).
    for endpoint in ("/ai/usage/summary", "/ai/usage/timeseries"):
        resp = gateway.admin("GET", endpoint, params={"to": "0.5"})
        assert resp.status_code == 200, resp.text
    for endpoint, body in (
        ("/chat/completions", {"model": "gpt-4o", "messages": MESSAGES, "user": {"id": 1}}),
        ("/embeddings", {"model": "text-embedding-3-small", "input": "x", "user": ["u"]}),
    ):
        resp = httpx.post(
            gateway.info.base_url + endpoint,
            json=body,
            headers={"authorization": f"Bearer {gateway.info.admin_key}"},
            timeout=30,
        )
        _assert_error(resp, 400, param="user")
    # A key written twice: the gateway would check one value and a provider, handed the
    # client's bytes, might serve the other (a model the key may not use, a stream unasked).
    twice = b'{"model": "gpt-4o", "model": "o1", "messages": [{"role": "user", "content": "hi"}]}'
    assert "'model' twice" in _assert_error(_post(gateway, content=twice), 400)["message"]
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        raw = b'{"model": "gpt-4o", "temperature": ' + constant + b', "messages": [{"role": "user", "content": "hi"}]}'
        assert constant.decode() in _assert_error(_post(gateway, content=raw), 400)["message"]


def test_dropped_parameter_names_reach_the_header_percent_encoded(gateway: Gateway) -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "messages": MESSAGES,
        "max_tokens": 16,
        "\u00e9\u20ac": 1,  # not latin-1: a header cannot carry it as it is
        "a\r\nX-Injected: yes": 2,  # a line break: the header would end there
        "drop_params": True,
    }
    resp = _post(gateway, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-switchyard-dropped-params"] == "%C3%A9%E2%82%AC,a%0D%0AX-Injected:%20yes"
    assert "x-injected" not in resp.headers


def _trickle(gateway: Gateway, head: bytes, drip: bytes, drips: int = 4) -> bytes:
    """Send ``head``, then ``drip`` every quarter second (``drips`` times; then the client goes
    quiet, so that nothing it sent is left unread when the edge closes, which would reset the
    connection), and return what the edge answers before it closes. Bounded: a connection the
    edge keeps open fails the test after 30 s."""
    origin = gateway.info.base_url.removesuffix("/v1").removeprefix("http://")
    host, port = origin.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head)
        for _ in range(drips):
            conn.settimeout(0.25)
            try:
                answer = conn.recv(65536)
                break  # the edge spoke (or closed) already
            except TimeoutError:
                conn.sendall(drip)
        else:
            conn.settimeout(30)
            try:
                answer = conn.recv(65536)
            except TimeoutError:
                raise AssertionError("the edge kept a trickling connection open for 30 s") from None
        conn.settimeout(10)
        while answer and (more := conn.recv(65536)):  # the rest of the answer, until it closes
            answer += more
        return answer


def test_a_client_that_trickles_its_headers_is_cut_off(gateway: Gateway) -> None:
    """Slowloris: one header line at a time. The head must arrive within the deadline (3 s in
    the test stack): the client gets a 408 and the connection is closed."""
    started = time.monotonic()
    answer = _trickle(gateway, b"POST /v1/chat/completions HTTP/1.1\r\nhost: edge\r\n", b"x-slow: 1\r\n")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < 25


@pytest.mark.parametrize("length", [b"-5", b"ten", b"1, 2"])
def test_a_request_http_cannot_parse_gets_a_json_400(gateway: Gateway, length: bytes) -> None:
    origin = gateway.info.base_url.removesuffix("/v1").removeprefix("http://")
    host, port = origin.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: edge\r\ncontent-length: " + length + b"\r\n\r\n{}")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head, answer
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_http"


def test_a_client_that_trickles_its_body_gets_a_408(gateway: Gateway) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + gateway.info.admin_key.encode() + b"\r\ncontent-length: 100000\r\n\r\n{"
    )
    answer = _trickle(gateway, head, b" ")
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408"), answer
    assert b'"request_timeout"' in rest


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("/chat/completions", {"model": "gpt-4o", "messages": MESSAGES * 2049}, "messages"),
        (
            "/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 1025}]},
            "messages[0].content",
        ),
        (
            "/chat/completions",
            {
                "model": "gpt-4o",
                "messages": MESSAGES,
                "tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)],
            },
            "tools",
        ),
        ("/embeddings", {"model": "text-embedding-3-small", "input": ["x"] * 2049}, "input"),
    ],
)
def test_arrays_past_their_bound_are_400s_naming_them(gateway: Gateway, endpoint: str, body: dict, param: str) -> None:  # type: ignore[type-arg]
    resp = httpx.post(
        gateway.info.base_url + endpoint,
        json=body,
        headers={"authorization": f"Bearer {gateway.info.admin_key}"},
        timeout=30,
    )
    error = _assert_error(resp, 400, "array_above_max_length", param)
    assert "maximum length" in error["message"]


def test_json_nested_past_the_depth_limit_is_a_400_naming_it(gateway: Gateway) -> None:
    """A tool schema nested 900 levels parsed, then ran the Gemini translator out of stack (a
    500); 64 levels is the documented bound, and a body right at it is served."""

    def nested(levels: int) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        for _ in range(levels):
            schema = {"type": "array", "items": schema}
        tool = {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": schema}}},
        }
        return {"model": "gemini-2.5-flash", "messages": MESSAGES, "tools": [tool]}

    error = _assert_error(_post(gateway, json=nested(900)), 400, "invalid_json")
    assert "64 levels" in error["message"]
    assert _assert_error(_post(gateway, json=nested(58)), 400, "invalid_json")  # 65 levels
    # The body, tools, the tool, function, parameters, properties and "a" are 7 levels: 64 in all.
    resp = _post(gateway, json=nested(57))
    assert resp.status_code == 200, resp.text
