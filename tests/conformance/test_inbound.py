"""The Responses and Messages APIs' conformance matrix, cell by cell, through the running stack
with the official ``openai`` and ``anthropic`` SDKs."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from tests.conformance.inbound import FEATURES, NOT_APPLICABLE, PROVIDERS, Ctx, cells
from tests.conftest import Gateway

_BY_NAME = {f.name: f for f in FEATURES}
_RUNNABLE = [c for c in cells() if (c[0], c[1]) not in NOT_APPLICABLE]


@pytest.fixture(scope="module")
def anthropic_client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=gateway.origin, api_key=gateway.info.admin_key, max_retries=0, timeout=20)
    yield client
    client.close()


@pytest.mark.parametrize(("provider", "feature", "mode"), _RUNNABLE, ids=["-".join(c) for c in _RUNNABLE])
def test_cell(gateway: Gateway, anthropic_client: anthropic.Anthropic, provider: str, feature: str, mode: str) -> None:
    ctx = Ctx(
        openai=gateway.client(timeout=20),
        anthropic=anthropic_client,
        provider=provider,
        model=PROVIDERS[provider],
        stream=mode == "stream",
    )
    _BY_NAME[feature].check(ctx)
