"""Client keys: expiry, allowed models, and revocation reaching every edge within a second."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.conftest import Gateway, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


def _create(gateway: Gateway, **body: object) -> dict:  # type: ignore[type-arg]
    resp = gateway.admin("POST", "/ai/keys", json={"user": "quinn", "name": "k", **body})
    assert resp.status_code == 201, resp.text
    created = dict(resp.json())
    key = created["key"]
    wait_until(lambda: gateway.admin("GET", "/v1/models", key=key).status_code in (200, 401) and _known(gateway, key))
    return created


def _known(gateway: Gateway, key: str) -> bool:
    resp = gateway.admin("GET", "/v1/models", key=key)
    return resp.status_code == 200 or resp.json()["error"]["code"] == "expired_api_key"


def test_key_expires_on_time(gateway: Gateway) -> None:
    created = _create(gateway, expires_at=time.time() + 3)
    assert created["expires_at"] is not None
    client = gateway.client(created["key"])
    assert client.chat.completions.create(model="echo/e", messages=MESSAGES).choices[0].message.content == "hi"
    time.sleep(max(0.0, created["expires_at"] - time.time()) + 0.05)
    with pytest.raises(openai.AuthenticationError) as exc:
        client.chat.completions.create(model="echo/e", messages=MESSAGES)
    assert exc.value.code == "expired_api_key"
    listed = gateway.admin("GET", "/ai/keys", params={"user": "quinn"}).json()["data"]
    assert {k["id"]: k["status"] for k in listed}[created["id"]] == "expired"
    past = gateway.admin("POST", "/ai/keys", json={"user": "quinn", "expires_at": time.time() - 10})
    assert past.status_code == 400 and past.json()["error"]["param"] == "expires_at"


def test_allowed_models(gateway: Gateway) -> None:
    created = _create(gateway, allowed_models=["echo/*", "gpt-4o"])
    client = gateway.client(created["key"])
    client.chat.completions.create(model="echo/anything", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-latest", messages=MESSAGES)  # an alias of an allowed model
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert exc.value.param == "model"


def test_allowed_models_hold_against_pinning_another_provider(gateway: Gateway) -> None:
    """Allowing ``gpt-4o`` allows it where its name routes, not through any provider or account
    that serves a model of that name; ``/v1/models`` lists only what the key may use."""
    created = _create(gateway, allowed_models=["gpt-4o"])
    client = gateway.client(created["key"])
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)  # the same route
    for pinned in ("echo/gpt-4o", "azure/gpt-4o", "openrouter/gpt-4o"):
        with pytest.raises(openai.PermissionDeniedError) as exc:
            client.chat.completions.create(model=pinned, messages=MESSAGES)
        assert exc.value.param == "model", pinned
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="echo/gpt-4o", input="x")
    assert [m.id for m in client.models.list()] == ["gpt-4o"]
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4.1")  # exists, but not for this key
    # A pattern that names the provider allows the pin.
    echo = gateway.client(_create(gateway, allowed_models=["echo/*"])["key"])
    assert echo.chat.completions.create(model="echo/gpt-4o", messages=MESSAGES).choices[0].message.content == "hi"
    # Another edge, started after the keys were made, holds them the same way.
    second = gateway.stack.add_edge("edge-pins")
    try:
        other = openai.OpenAI(base_url=second + "/v1", api_key=created["key"], max_retries=0)
        other.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError):
            other.chat.completions.create(model="echo/gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        assert [m.id for m in other.models.list()] == ["gpt-4o"]
    finally:
        gateway.stack.supervisor.stop("edge-pins")


def test_revocation_reaches_two_edges_within_a_second(gateway: Gateway) -> None:
    second = gateway.stack.add_edge("edge-2")
    try:
        created = _create(gateway)
        key = created["key"]
        origins = [gateway.origin, second]
        wait_until(
            lambda: all(
                httpx.get(o + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
                for o in origins
            ),
            what="the key on both edges",
        )
        refused_at: dict[str, float] = {}

        def watch(origin: str) -> None:
            with httpx.Client(timeout=5) as http:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    if http.get(origin + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 401:
                        refused_at[origin] = time.monotonic()
                        return

        watchers = [threading.Thread(target=watch, args=(o,)) for o in origins]
        for t in watchers:
            t.start()
        revoked = time.monotonic()
        assert gateway.admin("DELETE", f"/ai/keys/{created['id']}").status_code == 200
        for t in watchers:
            t.join()
        delays = {o: refused_at[o] - revoked for o in origins}
        assert all(d < 1.0 for d in delays.values()), delays
        print(f"revocation delay per edge: {', '.join(f'{d * 1000:.0f} ms' for d in delays.values())}")
    finally:
        gateway.stack.supervisor.stop("edge-2")
