"""Projects, and client keys changed in place (PATCH): every change is in force on both edges
when the call returns."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Gateway, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def second_edge(gateway: Gateway) -> Iterator[str]:
    origin = gateway.stack.add_edge("edge-projects")

    def heard() -> bool:  # the router confirms changes with the edges it has heard from
        resp = gateway.admin("POST", "/ai/keys", json={"user": "probe", "name": "warm-up"})
        return resp.headers.get("x-switchyard-sync") == "confirmed 2/2"

    wait_until(heard, what="the router to hear both edges")
    yield origin
    gateway.stack.supervisor.stop("edge-projects")


def _call(origin: str, key: str, model: str = "echo/e") -> httpx.Response:
    return httpx.post(
        origin + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": MESSAGES},
        timeout=30,
    )


def test_projects_crud_and_keys_that_belong_to_them(gateway: Gateway, second_edge: str) -> None:
    made = gateway.admin("POST", "/ai/projects", json={"name": "search", "description": "the search team"})
    assert made.status_code == 201 and made.json()["object"] == "project"
    assert gateway.admin("POST", "/ai/projects", json={"name": "search"}).status_code == 409
    assert gateway.admin("POST", "/ai/projects", json={"name": "no/slash"}).status_code == 400
    assert gateway.admin("POST", "/ai/projects", json={"name": "x", "rpm": 0}).status_code == 400
    assert gateway.admin("POST", "/ai/projects", json={"name": "x", "budget_period": "year"}).status_code == 400
    patched = gateway.admin("PATCH", "/ai/projects/search", json={"description": "search and ranking"})
    assert patched.json()["description"] == "search and ranking"
    assert gateway.admin("GET", "/ai/projects/search").json()["description"] == "search and ranking"
    assert "search" in {p["name"] for p in gateway.admin("GET", "/ai/projects").json()["data"]}

    body = {"user": "projects-pat", "name": "ci", "description": "the CI runner", "project": "search"}
    created = gateway.admin("POST", "/ai/keys", json=body)
    assert created.status_code == 201 and created.headers["x-switchyard-sync"] == "confirmed 2/2"
    key = created.json()
    assert (key["project"], key["description"]) == ("search", "the CI runner")
    nowhere = gateway.admin("POST", "/ai/keys", json={"user": "projects-pat", "project": "nope"})
    assert nowhere.status_code == 400 and nowhere.json()["error"]["param"] == "project"
    listed = gateway.admin("GET", "/ai/keys", params={"project": "search"}).json()["data"]
    assert [k["id"] for k in listed] == [key["id"]]

    # A project with keys is not deleted under them.
    held = gateway.admin("DELETE", "/ai/projects/search")
    assert held.status_code == 409 and key["id"] in held.json()["error"]["message"]
    moved = gateway.admin("PATCH", f"/ai/keys/{key['id']}", json={"project": None})
    assert moved.status_code == 200 and moved.json()["project"] is None
    assert gateway.admin("DELETE", "/ai/projects/search").status_code == 200
    assert gateway.admin("GET", "/ai/projects/search").status_code == 404


def test_a_key_changed_in_place_is_in_force_on_every_edge_at_once(gateway: Gateway, second_edge: str) -> None:
    origins = [gateway.origin, second_edge]
    created = gateway.admin("POST", "/ai/keys", json={"user": "projects-kim", "name": "laptop"}).json()
    key, key_id = created["key"], created["id"]
    for origin in origins:
        assert _call(origin, key).status_code == 200

    for round_ in range(5):  # each change, then a call on each edge at once
        resp = gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"status": "disabled"})
        assert resp.status_code == 200 and resp.headers["x-switchyard-sync"] == "confirmed 2/2", resp.text
        for origin in origins:
            refused = _call(origin, key)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "disabled_api_key", round_
        assert gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"status": "active"}).status_code == 200
        for origin in origins:
            assert _call(origin, key).status_code == 200, round_

    restricted = gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"allowed_models": ["gpt-4o"]})
    assert restricted.json()["allowed_models"] == ["gpt-4o"]
    assert all(_call(origin, key).status_code == 403 for origin in origins)  # echo/e is not allowed now
    cleared = gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"allowed_models": None, "description": "kim's"})
    assert cleared.json()["allowed_models"] is None and cleared.json()["description"] == "kim's"
    assert all(_call(origin, key).status_code == 200 for origin in origins)

    soon = time.time() + 4  # in the future when keyvault checks it, even on a busy machine
    assert gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"expires_at": soon}).json()["expires_at"] == soon
    wait_until(lambda: all(_call(o, key).status_code == 401 for o in origins), what="the key to expire")
    assert gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"expires_at": None}).status_code == 200
    assert all(_call(origin, key).status_code == 200 for origin in origins)

    assert gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"expires_at": time.time() - 5}).status_code == 400
    assert gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"status": "revoked"}).status_code == 400
    assert gateway.admin("PATCH", f"/ai/keys/{key_id}", json={"user": "someone"}).status_code == 400
    assert gateway.admin("PATCH", "/ai/keys/key_nope", json={"description": "x"}).status_code == 404
