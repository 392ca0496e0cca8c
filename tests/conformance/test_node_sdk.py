"""The key scenarios (streaming text, streamed tool calls, the usage chunk, an error) through
the official ``openai`` Node.js package, for every provider of the matrix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conformance.matrix import NO_RETRY_AFTER, PROVIDERS
from tests.conftest import Gateway

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def test_node_sdk_key_scenarios(gateway: Gateway) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is part of the test toolchain (make install runs npm ci)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `make install` (npm ci in tests/node)"
    args = [f"{p}={m}={m.replace('-deployment', '')}-status-429" for p, m in PROVIDERS.items()]
    env = dict(os.environ, SWITCHYARD_BASE_URL=gateway.info.base_url, SWITCHYARD_API_KEY=gateway.info.admin_key)
    proc = subprocess.run(
        [node, "scenarios.mjs", *args], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert set(results) == set(PROVIDERS)
    for provider, r in results.items():
        assert r["text"] == "Reply 0 to: hello node", (provider, r)
        assert r["finish"] == "stop" and r["last_chunk_choices"] == 0, (provider, r)
        usage = r["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0, (provider, usage)
        calls = r["tool_calls"]
        assert list(calls) == ["0"] and calls["0"]["name"] == "get_weather" and calls["0"]["id"], (provider, calls)
        assert json.loads(calls["0"]["arguments"]) == {"city": "Paris"} and r["tool_finish"] == "tool_calls"
        # Bedrock's and Cohere's 429s carry no retry-after; the others' say 7 s, relayed as said.
        retry_after = None if provider in NO_RETRY_AFTER else "7"
        error = {"name": "RateLimitError", "status": 429, "retry_after": retry_after}
        assert r["error"] == error, (provider, r["error"])
