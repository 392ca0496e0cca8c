"""Translated providers through the running stack: what the matrix does not cover cell by
cell (image-URL fetching and its guard, embeddings, model listing, metering of translated
calls, what reaches the provider)."""

from __future__ import annotations

import base64
import json
import struct

import openai
import pytest

from services.edge.media import is_public
from tests.conftest import Gateway, wait_until
from tests.simulators import bedrock_sim
from tests.simulators.gemini_sim import vector


def _image(url: str) -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]


def test_gemini_image_url_is_fetched_by_the_gateway(gateway: Gateway) -> None:
    url = f"{gateway.images.origin}/pixel.png"
    resp = gateway.client().chat.completions.create(model="gemini-2.5-flash", messages=_image(url))
    assert "image image/png 70 bytes" in (resp.choices[0].message.content or "")
    sent = gateway.gemini.state.requests[-1].body["contents"][0]["parts"][1]
    assert sent["inlineData"]["mimeType"] == "image/png"


@pytest.mark.parametrize(
    ("path_or_url", "fragment"),
    [
        ("http://127.0.0.1:{other}/v1/models", "non-public"),  # loopback, another port
        ("http://169.254.169.254/latest/meta-data/", "non-public"),  # cloud metadata
        ("http://10.1.2.3/a.png", "non-public"),
        ("http://[::1]:{other}/a.png", "non-public"),
        ("http://[::ffff:127.0.0.1]:{other}/a.png", "non-public"),
        ("http://localhost:{other}/a.png", "non-public"),  # a name that resolves to loopback
        ("http://2130706433:{other}/a.png", "non-public"),  # 127.0.0.1 written as one number
        ("http://0x7f.0.0.1:{other}/a.png", "non-public"),  # ... and in hex
        ("{images}/to-private", "non-public"),  # an allowed server redirecting to loopback
        ("{images}/page.html", "could not be fetched as an image"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{other}/v1/models", "non-public"),  # full-width digits
        ("http://127\u30020\u30020\u30021:{other}/v1/models", "non-public"),  # ideographic full stops
        ("http://\u2460\u2461\u2466.\u24ea.\u24ea.\u2460:{other}/a.png", "non-public"),  # circled digits
        ("http://\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14/latest/", "non-public"),
        ("{images}/huge.png", "larger than"),
        ("file:///etc/passwd", "http(s)"),
    ],
)
def test_image_urls_that_must_not_be_fetched(gateway: Gateway, path_or_url: str, fragment: str) -> None:
    url = path_or_url.format(other=gateway.sim.port, images=gateway.images.origin)
    before = len(gateway.gemini.state.requests)
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client().chat.completions.create(model="gemini-2.5-flash", messages=_image(url))
    assert fragment in err.value.message
    assert err.value.body["param"] == "messages[0].content[1]"  # type: ignore[index]
    assert err.value.body["code"] == "invalid_image_url"  # type: ignore[index]
    assert len(gateway.gemini.state.requests) == before, "nothing reaches the provider"


def test_public_address_classifier() -> None:
    assert is_public("8.8.8.8") and is_public("2606:4700:4700::1111")
    for address in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                    "::1", "fc00::1", "fe80::1", "::ffff:10.0.0.1", "224.0.0.1", "240.0.0.1"):  # fmt: skip
        assert not is_public(address), address


def test_embeddings_openai_gemini_mistral(gateway: Gateway) -> None:
    client = gateway.client()
    openai_resp = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], dimensions=4)
    assert [len(d.embedding) for d in openai_resp.data] == [4, 4] and openai_resp.usage.prompt_tokens == 3
    gemini_one = client.embeddings.create(model="gemini-embedding-001", input="hello")
    assert gemini_one.data[0].embedding == pytest.approx(vector("hello", 768))
    gemini_many = client.embeddings.create(model="gemini-embedding-001", input=["a", "bb"], dimensions=8)
    assert [d.index for d in gemini_many.data] == [0, 1]
    assert gemini_many.data[1].embedding == pytest.approx(vector("bb", 8))
    assert gateway.gemini.state.requests[-1].path.endswith(":batchEmbedContents")
    assert gemini_many.usage.prompt_tokens == 2
    # base64: the SDK decodes it back into floats (little-endian float32, as OpenAI sends).
    raw = client.embeddings.with_raw_response.create(
        model="gemini-embedding-001", input="hello", encoding_format="base64", dimensions=8
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert list(struct.unpack("<8f", base64.b64decode(encoded))) == pytest.approx(vector("hello", 8))
    mistral = client.embeddings.create(model="mistral-embed", input="x")
    assert len(mistral.data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model="claude-sonnet-4-6", input="x")
    assert err.value.status_code == 501


def test_embeddings_are_metered(gateway: Gateway) -> None:
    key = gateway.new_user_key("embedder")
    client = gateway.client(key)
    client.embeddings.create(model="text-embedding-3-small", input="one two three")
    client.embeddings.create(model="gemini-embedding-001", input=["abcdefgh", "ijkl"])  # estimated: 2 + 1
    wait_until(lambda: gateway.requests_metered("embedder") == 2, what="both embeddings metered")
    summary = gateway.usage("embedder")
    assert summary["prompt_tokens"] == 3 + 3 and summary["completion_tokens"] == 0
    providers = {row["provider"] for row in summary["by_provider"]}
    assert providers == {"openai", "gemini"}


def test_models_list_owner_and_capabilities(gateway: Gateway) -> None:
    models = {m.id: m for m in gateway.client().models.list()}
    assert models["claude-sonnet-4-6"].owned_by == "anthropic"
    assert "reasoning" in (models["gemini-2.5-flash"].model_extra or {})["capabilities"]
    assert (models["gemini-embedding-001"].model_extra or {})["capabilities"] == ["embeddings"]


def test_translated_calls_are_metered_with_provider_usage(gateway: Gateway) -> None:
    key = gateway.new_user_key("translator-meter")
    client = gateway.client(key)
    a = client.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "one two"}])
    g = client.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "three"}], stream=True,
        stream_options={"include_usage": True}, reasoning_effort="low",
    )  # fmt: skip
    usages = [c.usage for c in g if c.usage is not None]  # reads the whole stream
    g_usage = usages[0]
    assert a.usage is not None
    wait_until(lambda: gateway.requests_metered("translator-meter") == 2, what="both calls metered")
    summary = gateway.usage("translator-meter")
    assert summary["prompt_tokens"] == a.usage.prompt_tokens + g_usage.prompt_tokens
    assert summary["completion_tokens"] == a.usage.completion_tokens + g_usage.completion_tokens
    sent = gateway.anthropic.state.requests[-1]
    assert sent.headers["x-api-key"] and sent.headers["anthropic-version"] == "2023-06-01"


def test_dropped_parameters_are_named_and_not_sent(gateway: Gateway) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "x", "name": "alice"}],
        seed=1,
        frequency_penalty=0.5,
        extra_body={"drop_params": True},
    )
    dropped = set(raw.headers["x-switchyard-dropped-params"].split(","))
    assert dropped == {"seed", "frequency_penalty", "messages[0].name"}
    sent = gateway.anthropic.state.requests[-1].body
    assert "seed" not in sent and "frequency_penalty" not in sent and "drop_params" not in sent


def test_several_image_urls_are_fetched_together_and_capped(gateway: Gateway) -> None:
    url = f"{gateway.images.origin}/pixel.png"
    parts: list[dict[str, object]] = [{"type": "text", "text": "many"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for _ in range(3)]
    resp = gateway.client().chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": parts}]
    )
    assert (resp.choices[0].message.content or "").count("image image/png 70 bytes") == 3
    too_many = [{"type": "image_url", "image_url": {"url": url}} for _ in range(17)]
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client().chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": too_many}]
        )
    assert "at most 16" in err.value.message and err.value.body["param"] == "messages[0].content[16]"  # type: ignore[index]
    # One refused URL among good ones fails the request as a whole.
    mixed = [*parts, {"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}}]
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client().chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": mixed}]
        )
    assert err.value.body["param"] == "messages[0].content[4]"  # type: ignore[index]


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-2.5-flash"])
def test_sdk_message_objects_sent_back_as_they_are_keep_signatures(gateway: Gateway, model: str) -> None:
    """The commonest client pattern: append the SDK's message object itself to the history."""
    client = gateway.client()
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]
    messages: list[object] = [{"role": "user", "content": "weather?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=tools, reasoning_effort="low")  # type: ignore[arg-type]
    message = first.choices[0].message
    assert message.tool_calls
    messages += [message, {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}]
    second = client.chat.completions.create(model=model, messages=messages, tools=tools, reasoning_effort="low")  # type: ignore[arg-type]
    assert "sunny" in (second.choices[0].message.content or "")


def test_azure_deployment_url_version_and_key(gateway: Gateway) -> None:
    gateway.client().chat.completions.create(model="azure/gpt-4.1-prod", messages=[{"role": "user", "content": "x"}])
    sent = gateway.sim.state.requests[-1]
    assert sent.path == "/openai/deployments/gpt-4.1-prod/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] and "authorization" not in {h.lower() for h in sent.headers}


def test_self_hosted_server_is_keyless_until_an_admin_adds_a_key(gateway: Gateway) -> None:
    client = gateway.client()
    messages = [{"role": "user", "content": "x"}]

    def last_auth() -> str | None:
        return gateway.sim.state.requests[-1].headers.get("Authorization")

    client.chat.completions.create(model="selfhosted/llama-3.1-8b", messages=messages)  # type: ignore[arg-type]
    assert gateway.sim.state.requests[-1].path == "/selfhosted/v1/chat/completions" and last_auth() is None
    key = {"provider": "selfhosted", "api_key": "sk-vllm-123", "label": "vllm"}
    created = gateway.admin("POST", "/ai/providers/keys", json=key)
    assert created.status_code == 201, created.text

    def uses_key() -> bool:
        client.chat.completions.create(model="selfhosted/llama-3.1-8b", messages=messages)  # type: ignore[arg-type]
        return last_auth() == "Bearer sk-vllm-123"

    wait_until(uses_key, what="the self-hosted server's key to be used")
    assert gateway.admin("DELETE", f"/ai/providers/keys/{created.json()['id']}").status_code == 200

    def keyless_again() -> bool:
        client.chat.completions.create(model="selfhosted/llama-3.1-8b", messages=messages)  # type: ignore[arg-type]
        return last_auth() is None

    wait_until(keyless_again, what="requests to go keyless again")


def test_gemini_embeddings_over_the_batch_limit_go_in_several_batches(gateway: Gateway) -> None:
    before = len(gateway.gemini.state.requests)
    texts = [f"text number {i}" for i in range(250)]
    resp = gateway.client().embeddings.create(model="gemini-embedding-001", input=texts, dimensions=4)
    assert [d.index for d in resp.data] == list(range(250))
    assert resp.data[249].embedding == pytest.approx(vector("text number 249", 4))
    batches = [r for r in gateway.gemini.state.requests[before:] if r.path.endswith(":batchEmbedContents")]
    assert sorted(len(r.body["requests"]) for r in batches) == [50, 100, 100]


# --- the seed pages' content shapes -------------------------------------------------------

PDF = base64.b64encode(b"%PDF-1.4\n% a tiny document\n%%EOF\n").decode()


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-2.5-flash"])
def test_a_vercel_style_file_part_reaches_the_provider_as_a_pdf(gateway: Gateway, model: str) -> None:
    """The Vercel AI Gateway's page: ``file: {data, media_type, filename}``."""
    part = {"type": "file", "file": {"data": PDF, "media_type": "application/pdf", "filename": "document.pdf"}}
    resp = gateway.client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "summarise"}, part]}],  # type: ignore[list-item]
    )
    assert "document application/pdf" in (resp.choices[0].message.content or "")
    if model.startswith("claude"):
        block = gateway.anthropic.state.requests[-1].body["messages"][0]["content"][1]
        assert block["type"] == "document" and block["source"]["data"] == PDF
        assert block.get("title") == "document.pdf"
    else:
        sent = gateway.gemini.state.requests[-1].body["contents"][0]["parts"][1]
        assert sent["inlineData"] == {"mimeType": "application/pdf", "data": PDF}
    with pytest.raises(openai.BadRequestError, match="media_type"):
        gateway.client().chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [{"type": "file", "file": {"data": PDF}}]}],  # type: ignore[list-item,typeddict-item]
        )


def _media(url_key: str, url: str, mime: str) -> list[dict[str, object]]:
    """TrueFoundry's page: audio and video as an ``image_url`` with a ``mime_type``."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "listen"},
                {"type": "image_url", "image_url": {url_key: url, "mime_type": mime}},
            ],
        }
    ]


def test_audio_and_video_as_image_url_parts_reach_gemini(gateway: Gateway) -> None:
    client = gateway.client()
    clip = base64.b64encode(b"RIFF....WAVEfmt ").decode()
    # A data URI, its type overridden by mime_type (the page's video example says image/jpeg).
    resp = client.chat.completions.create(
        model="gemini-2.5-flash",
        messages=_media("image_url", f"data:image/jpeg;base64,{clip}", "video/mp4"),  # type: ignore[arg-type]
    )
    assert "video video/mp4 16 bytes" in (resp.choices[0].message.content or "")
    # A URL the gateway fetches, typed by the server or (octet-stream) by mime_type.
    for path in ("/clip.wav", "/clip.bin"):
        resp = client.chat.completions.create(
            model="gemini-2.5-flash",
            messages=_media("url", gateway.images.origin + path, "audio/wav"),  # type: ignore[arg-type]
        )
        assert "audio audio/wav 52 bytes" in (resp.choices[0].message.content or ""), path
    # A YouTube URL goes to Gemini as a file URI: Gemini reads it itself.
    video = "https://www.youtube.com/watch?v=fxqE27gIZcc"
    resp = client.chat.completions.create(model="gemini-2.5-flash", messages=_media("url", video, "video/mp4"))  # type: ignore[arg-type]
    sent = gateway.gemini.state.requests[-1].body["contents"][0]["parts"][1]
    assert sent == {"fileData": {"mimeType": "video/mp4", "fileUri": video}}
    # What the URL returns must be what was declared; the guard holds as for images.
    with pytest.raises(openai.BadRequestError, match="could not be fetched as audio/wav"):
        client.chat.completions.create(
            model="gemini-2.5-flash",
            messages=_media("url", gateway.images.origin + "/pixel.png", "audio/wav"),  # type: ignore[arg-type]
        )
    with pytest.raises(openai.BadRequestError, match="non-public"):
        client.chat.completions.create(
            model="gemini-2.5-flash",
            messages=_media("url", "http://10.0.0.1/a.wav", "audio/wav"),  # type: ignore[arg-type]
        )
    # Anthropic takes no audio: a 400 that says so, before anything is sent.
    before = len(gateway.anthropic.state.requests)
    with pytest.raises(openai.BadRequestError, match="not audio/wav"):
        client.chat.completions.create(
            model="claude-sonnet-4-6",
            messages=_media("url", gateway.images.origin + "/clip.wav", "audio/wav"),  # type: ignore[arg-type]
        )
    assert len(gateway.anthropic.state.requests) == before


# --- Google Vertex AI -----------------------------------------------------------------------


def test_vertex_ai_with_a_service_account_key(gateway: Gateway) -> None:
    """`vertex/<model>`: Gemini's wire format at the project's Vertex path, with an access token
    the edge mints from the service account key kept in Vault, cached, and metered at
    Gemini's prices under the vertex account."""
    sim = gateway.gemini
    info = sim.service_account("proj-sim")
    added = gateway.admin("POST", "/ai/providers/keys", json={"provider": "vertex", "api_key": json.dumps(info)})
    assert added.status_code == 201, added.text
    key = gateway.new_user_key("vertex-user")
    client = gateway.client(key)
    before = sim.token_requests
    try:
        resp = client.chat.completions.create(
            model="vertex/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
        assert (resp.choices[0].message.content or "").startswith("Reply 0 to: hi")
        sent = sim.state.requests[-1]
        assert (
            sent.path
            == "/v1/projects/proj-sim/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"
        )
        assert {k.lower(): v for k, v in sent.headers.items()}["authorization"].startswith("Bearer ya29.sim-")
        stream = client.chat.completions.create(
            model="vertex/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("Reply 0 to: hi")
        for _ in range(3):
            client.chat.completions.create(model="vertex/gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
        assert sim.token_requests == before + 1  # one token, reused until it nears its expiry
        wait_until(lambda: gateway.requests_metered("vertex-user") == 5, what="the Vertex calls to be metered")
        row = gateway.admin("GET", "/ai/usage/requests", params={"user": "vertex-user", "limit": 1}).json()["data"][0]
        assert (row["provider"], row["provider_account"]) == ("gemini", "vertex") and row["cost_usd"] > 0
        with pytest.raises(openai.BadRequestError, match="not supported yet"):
            client.embeddings.create(model="vertex/gemini-embedding-001", input="x")
    finally:
        gateway.admin("DELETE", f"/ai/providers/keys/{added.json()['id']}")

    # A key the token endpoint refuses: the provider's 401, and the key goes out of service.
    forged = {**info, "client_email": "nobody@proj-sim.iam.gserviceaccount.com"}
    bad = gateway.admin("POST", "/ai/providers/keys", json={"provider": "vertex", "api_key": json.dumps(forged)})
    assert bad.status_code == 201, bad.text
    try:
        with pytest.raises(openai.AuthenticationError, match="refused the service account"):
            client.chat.completions.create(model="vertex/gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])

        def out_of_service() -> bool:
            keys = gateway.admin("GET", "/ai/providers/keys").json()["data"]
            return any(k["id"] == bad.json()["id"] and k["status"] == "invalid" for k in keys)

        wait_until(out_of_service, what="the refused service account to be out of service")
    finally:
        gateway.admin("DELETE", f"/ai/providers/keys/{bad.json()['id']}")


# --- Amazon Bedrock ---------------------------------------------------------------------------


def test_bedrock_through_the_converse_api(gateway: Gateway) -> None:
    """Nova by name and Claude by `bedrock/<model id>`, signed with SigV4 from the edges' AWS
    credential chain (no provider key), tools streamed, Claude's signed thinking handed back."""
    sim = gateway.bedrock
    key = gateway.new_user_key("bedrock-user")
    client = gateway.client(key)
    resp = client.chat.completions.create(model="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": "hi"}])
    assert (resp.choices[0].message.content or "").startswith("Reply 0 to: hi")
    assert sim.signed[-1] == bedrock_sim.ACCESS_KEY  # the chain's key, with a signature the simulator recomputed
    assert sim.state.requests[-1].path == "/model/amazon.nova-pro-v1%3A0/converse"
    assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == bedrock_sim.CACHE_READ

    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    stream = client.chat.completions.create(
        model="amazon.nova-lite-v1:0",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[weather],
        stream=True,  # type: ignore[list-item]
    )
    chunks = list(stream)
    arguments = "".join(
        call.function.arguments or ""
        for c in chunks
        if c.choices
        for call in (c.choices[0].delta.tool_calls or [])
        if call.function is not None
    )
    assert json.loads(arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]

    claude = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
    question = {"role": "user", "content": "weather in Paris?"}
    first = client.chat.completions.create(
        model=claude,
        messages=[question],
        tools=[weather],
        reasoning_effort="low",
        max_completion_tokens=4096,  # type: ignore[list-item]
    )
    message = first.choices[0].message
    blocks = (message.model_extra or {}).get("thinking_blocks")
    assert blocks and blocks[0]["signature"] and message.tool_calls
    sent = sim.state.requests[-1].body
    assert sent["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 2048
    back = {**message.model_dump(exclude_none=True), "thinking_blocks": blocks}
    result = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}
    second = client.chat.completions.create(
        model=claude,
        messages=[question, back, result],
        tools=[weather],
        reasoning_effort="low",
        max_completion_tokens=4096,  # type: ignore[list-item]
    )
    assert "sunny" in (second.choices[0].message.content or "")
    wait_until(lambda: gateway.requests_metered("bedrock-user") == 4, what="the Bedrock calls to be metered")
    row = gateway.admin("GET", "/ai/usage/requests", params={"user": "bedrock-user"}).json()["data"][-1]
    assert row["provider"] == "bedrock" and row["cost_usd"] > 0  # Nova Pro at the catalog's price

    # What Converse cannot carry is refused by name before anything is sent.
    before = len(sim.state.requests)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="amazon.nova-pro-v1:0",
            messages=[question],
            response_format={"type": "json_object"},  # type: ignore[list-item]
        )
    assert err.value.body["param"] == "response_format"  # type: ignore[index]
    assert len(sim.state.requests) == before


def test_bedrock_provider_keys_api_key_and_access_key(gateway: Gateway) -> None:
    sim = gateway.bedrock
    client = gateway.client()
    sim.credentials["AKIASECONDKEY0000002"] = ("second/secret", "session-token")
    for secret, signer in (
        (bedrock_sim.API_KEY, "bearer"),
        ("AKIASECONDKEY0000002:second/secret:session-token", "AKIASECONDKEY0000002"),
    ):
        added = gateway.admin("POST", "/ai/providers/keys", json={"provider": "bedrock", "api_key": secret})
        assert added.status_code == 201, added.text
        try:
            client.chat.completions.create(model="amazon.nova-micro-v1:0", messages=[{"role": "user", "content": "x"}])
            assert sim.signed[-1] == signer
        finally:
            gateway.admin("DELETE", f"/ai/providers/keys/{added.json()['id']}")
    # An access key whose secret is wrong: AWS's 403, and the key goes out of service.
    bad = gateway.admin(
        "POST", "/ai/providers/keys", json={"provider": "bedrock", "api_key": f"{bedrock_sim.ACCESS_KEY}:wrong"}
    )
    try:
        with pytest.raises(openai.PermissionDeniedError, match="signature"):
            client.chat.completions.create(model="amazon.nova-micro-v1:0", messages=[{"role": "user", "content": "x"}])
    finally:
        gateway.admin("DELETE", f"/ai/providers/keys/{bad.json()['id']}")
