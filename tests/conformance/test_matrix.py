"""The conformance matrix, cell by cell, through the running stack with the official SDK."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.matrix import FEATURES, NOT_APPLICABLE, PROVIDERS, Ctx, cells
from tests.conftest import Gateway, wait_until

_BY_NAME = {f.name: f for f in FEATURES}
_RUNNABLE = [c for c in cells() if (c[0], c[1]) not in NOT_APPLICABLE]


@pytest.mark.parametrize(("provider", "feature", "mode"), _RUNNABLE, ids=["-".join(c) for c in _RUNNABLE])
def test_cell(gateway: Gateway, provider: str, feature: str, mode: str) -> None:
    ctx = Ctx(
        client=gateway.client(timeout=20),
        provider=provider,
        model=PROVIDERS[provider],
        stream=mode == "stream",
        image_url=f"{gateway.images.origin}/pixel.png",
        reactivate=lambda p: reactivate(gateway, p),
        sent=lambda: last_sent(gateway, provider),
    )
    _BY_NAME[feature].check(ctx)


def reactivate(gateway: Gateway, provider: str) -> None:
    """Put back in service the provider keys a 401 or 403 took out. The edge reports a refused
    key to keyvault in the background: wait for that report to land first, or it would undo
    the reactivation."""

    def keys() -> list[dict[str, Any]]:
        data = gateway.admin("GET", "/ai/providers/keys").json()["data"]
        return [k for k in data if k["provider"] == provider]

    if not keys():
        return  # a keyless provider (self-hosted)
    wait_until(lambda: any(k["status"] == "invalid" for k in keys()), what=f"the refused {provider} key reported")
    for key in keys():
        if key["status"] != "active":
            resp = gateway.admin("PATCH", f"/ai/providers/keys/{key['id']}", json={"status": "active"})
            assert resp.status_code == 200, resp.text
    client = gateway.client(timeout=20)

    def serves() -> bool:
        try:
            client.chat.completions.create(model=PROVIDERS[provider], messages=[{"role": "user", "content": "x"}])
        except Exception:
            return False
        return all(k["status"] == "active" for k in keys())

    wait_until(serves, what=f"{provider} keys back in service")


def last_sent(gateway: Gateway, provider: str) -> dict[str, Any]:
    """What the provider's simulator received last (the matrix runs one cell at a time)."""
    states = {
        "anthropic": gateway.anthropic.state,
        "gemini": gateway.gemini.state,
        "vertex": gateway.gemini.state,  # the Gemini simulator serves Vertex AI's paths
        "bedrock": gateway.bedrock.state,
        "cohere": gateway.cohere.state,
    }
    state = states.get(provider, gateway.sim.state)
    return dict(state.requests[-1].body)
