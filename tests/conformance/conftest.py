"""What the conformance tests share: a Vertex AI service account key in Vault for the matrix's
``vertex`` column (the Gemini simulator issues its tokens), removed when the package is done
so later tests meet Vertex AI without one."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import Gateway


@pytest.fixture(scope="package", autouse=True)
def vertex_key(gateway: Gateway) -> Iterator[None]:
    account = gateway.gemini.service_account("proj-sim")
    added = gateway.admin("POST", "/ai/providers/keys", json={"provider": "vertex", "api_key": json.dumps(account)})
    assert added.status_code == 201, added.text
    yield
    gateway.admin("DELETE", f"/ai/providers/keys/{added.json()['id']}")
