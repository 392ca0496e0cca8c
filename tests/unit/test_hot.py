"""services/edge/hot.py: chat completions go straight to their handler and come back as they
would through the framework: the request id on every reply, errors in OpenAI's shape whether
the handler raises a gateway error or has a bug, the header limit; every other
request reaches the FastAPI app. (The handler itself runs against the real stack in tests/e2e
and tests/conformance; here it is replaced to make it fail on purpose.)"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from services.edge import errors, hot
from shared.errors import RATE_LIMITED, GatewayError

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _client(monkeypatch: pytest.MonkeyPatch, handler: object) -> TestClient:
    monkeypatch.setattr(hot.chat, "chat_completions", handler)
    app = FastAPI()
    errors.install(app)

    @app.get("/v1/models")
    async def models() -> dict[str, str]:
        return {"object": "list"}

    return TestClient(hot.HotPath(app, max_header_bytes=4096), raise_server_exceptions=False)


def test_an_answer_passes_with_its_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    async def answer(request: Request) -> Response:
        assert request.app.state is not None and request.state.request_id == "mine-1"
        return Response(await request.body(), media_type="application/json")

    with _client(monkeypatch, answer) as client:
        for path in ("/v1/chat/completions", "/ai/v1/chat/completions"):
            resp = client.post(path, json=BODY, headers={"x-request-id": "mine-1"})
            assert resp.status_code == 200 and resp.json() == BODY
            assert resp.headers["x-request-id"] == "mine-1"
        assert client.get("/v1/models").json() == {"object": "list"}  # the framework's route
        other = client.get("/v1/chat/completions")  # not the hot path: this app has no such route
        assert other.status_code == 404 and other.json()["error"]["type"] == "not_found_error"


def test_errors_are_answered_in_openai_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    async def limited(_: Request) -> Response:
        raise GatewayError(RATE_LIMITED, "slow down", headers={"retry-after": "3"})

    with _client(monkeypatch, limited) as client:
        resp = client.post("/v1/chat/completions", json=BODY)
        assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
        assert resp.json()["error"]["message"] == "slow down" and resp.headers["x-request-id"].startswith("req_")

    async def broken(_: Request) -> Response:
        raise RuntimeError("a bug")

    with _client(monkeypatch, broken) as client:
        resp = client.post("/v1/chat/completions", json=BODY)
        assert resp.status_code == 500 and resp.json()["error"]["type"] == "server_error"
        assert "a bug" not in resp.text and resp.headers["x-request-id"].startswith("req_")


def test_the_header_limit_holds_on_the_hot_path(monkeypatch: pytest.MonkeyPatch) -> None:
    async def answer(_: Request) -> Response:
        raise AssertionError("not reached")

    with _client(monkeypatch, answer) as client:
        resp = client.post("/v1/chat/completions", json=BODY, headers={"x-big": "x" * 5000})
        assert resp.status_code == 413 and resp.json()["error"]["type"] == "invalid_request_error"
