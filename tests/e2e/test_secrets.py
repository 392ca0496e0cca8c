"""Provider keys never leak, and Vault going away does not stop traffic."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
from openai import OpenAI

from shared import subjects
from shared.bus import Bus, Msg
from shared.identity import EdgeIdentity, create
from shared.messages import SealedProviderKeys
from shared.sealing import Recipient
from tests.conftest import PROVIDER_KEY, Gateway, files_containing, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]
CANARY = "sk-canary-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e"


class BusRecorder:
    """A subscriber to every subject on the bus, in a thread of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[bytes] = []
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        bus = Bus(self.url, "test-recorder")
        await bus.connect(deadline=10)

        async def record(msg: Msg) -> None:
            self.seen.append(msg.subject.encode() + b" " + repr(msg.headers).encode() + b" " + msg.data)

        await bus.subscribe(">", record)
        self.ready.set()
        await self._stop.wait()
        await bus.close()

    def __enter__(self) -> BusRecorder:
        self._thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_canary_provider_key_never_leaves_vault_in_plaintext(gateway: Gateway) -> None:
    responses: list[str] = []
    with BusRecorder(gateway.info.nats_url_for("admin")) as recorder:
        created = gateway.admin(
            "POST", "/ai/providers/keys", json={"provider": "openai", "api_key": CANARY, "label": "canary"}
        )
        assert created.status_code == 201
        responses.append(created.text)
        key_id = created.json()["id"]
        try:
            client = gateway.client()
            seen_before = len(gateway.sim.state.requests)
            wait_until(
                lambda: (
                    client.chat.completions.create(model="gpt-4o", messages=MESSAGES) is not None
                    and any(
                        r.headers.get("Authorization") == f"Bearer {CANARY}"
                        for r in gateway.sim.state.requests[seen_before:]
                    )
                ),
                what="the canary key to be used upstream",
            )
            for _ in range(10):  # real traffic, streams too, spread over both OpenAI keys
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
            for path in ("/ai/providers/keys", "/ai/keys", "/ai/usage/requests", "/ai/usage/summary", "/ai/models"):
                responses.append(gateway.admin("GET", path).text)
        finally:
            responses.append(gateway.admin("DELETE", f"/ai/providers/keys/{key_id}").text)

        def only_env_key() -> bool:
            start = len(gateway.sim.state.requests)
            for _ in range(4):
                gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
            return all(
                r.headers.get("Authorization") == f"Bearer {PROVIDER_KEY}" for r in gateway.sim.state.requests[start:]
            )

        wait_until(only_env_key, what="the edge to drop the deleted key")

    assert recorder.seen, "the recorder saw no bus traffic"
    assert any(b"provider_keys.fetch" in m for m in recorder.seen), "no key delivery was observed"
    assert not [m for m in recorder.seen if CANARY.encode() in m], "the canary crossed the bus in plaintext"
    assert not [r for r in responses if CANARY in r], "an admin API response showed the canary"
    needle = CANARY.encode()
    leaks = files_containing(gateway.info.data_dir, needle)
    assert leaks == [], f"the canary is in plaintext in {leaks}"


def test_vault_down_traffic_flows_admin_503_then_recovers(gateway: Gateway) -> None:
    client = gateway.client()
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    gateway.stack.supervisor.stop("vault")
    try:
        # Chat keeps working with the provider keys the edge holds.
        for _ in range(5):
            assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content
        resp = gateway.admin("GET", "/ai/providers/keys")
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "service_unavailable"
        created = gateway.admin(
            "POST", "/ai/providers/keys", json={"provider": "mistral", "api_key": "x", "label": "v"}
        )
        assert created.status_code == 503
    finally:
        gateway.stack.supervisor.start("vault")  # the launcher unseals it again
    # No service restarted: keyvault answers again by itself.
    wait_until(lambda: gateway.admin("GET", "/ai/providers/keys").status_code == 200, timeout=30, what="keyvault")
    assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content
    assert httpx.get(gateway.origin + "/readyz").status_code == 200


def _deliver(gateway: Gateway) -> dict[str, list[str]]:
    """Ask keyvault for the provider keys as an edge does, and open them."""

    async def run() -> dict[str, list[str]]:
        me = Recipient()
        identity = EdgeIdentity.load(gateway.info.data_dir / "identity" / "local.key")  # the launcher's edge's
        fetch = identity.fetch(me.public_key_b64, "test")
        bus = Bus(gateway.info.nats_url_for("edge"), "test-edge", service="edge")
        await bus.connect(deadline=10)
        try:
            reply = await bus.request(subjects.PROVIDER_KEYS_FETCH, fetch, SealedProviderKeys)
        finally:
            await bus.close()
        out: dict[str, list[str]] = {}
        for item in reply.keys:
            out.setdefault(item.provider, []).append(me.open(item.sealed, context=item.id.encode()).decode())
        return out

    return asyncio.run(run())


def test_rotate_encryption_under_load(gateway: Gateway) -> None:
    extra = gateway.admin(
        "POST", "/ai/providers/keys", json={"provider": "mistral", "api_key": "sk-m-rot", "label": "rot"}
    )
    assert extra.status_code == 201
    client = gateway.client()
    failures: list[BaseException] = []
    done = threading.Event()
    served = 0

    def traffic() -> None:
        nonlocal served
        while not done.is_set():
            try:
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                served += 1
            except Exception as exc:  # every request before, during and after must succeed
                failures.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        first = gateway.admin("POST", "/ai/providers/keys/rotate-encryption")
        assert first.status_code == 200, first.text
        second = gateway.admin("POST", "/ai/providers/keys/rotate-encryption").json()
        assert second["key_version"] == first.json()["key_version"] + 1
        assert second["rewrapped"] == len(gateway.admin("GET", "/ai/providers/keys").json()["data"])
        # Keys still decrypt after the old versions were retired: a fresh sealed delivery opens.
        assert PROVIDER_KEY in _deliver(gateway).get("openai", [])
        assert "sk-m-rot" in _deliver(gateway).get("mistral", [])
        gateway.admin("DELETE", f"/ai/providers/keys/{extra.json()['id']}")  # a change event: edges refetch
        before = served
        wait_until(lambda: served > before + 5, what="traffic after the rotation")
    finally:
        done.set()
        for t in threads:
            t.join()
    assert failures == []
    assert served > 0
    assert (
        gateway.admin("POST", "/ai/providers/keys/rotate-encryption", key=gateway.new_user_key("rot")).status_code
        == 403
    )


def test_only_edges_with_a_registered_identity_get_provider_keys(gateway: Gateway, tmp_path: Path) -> None:
    """Two more edge processes on the session stack's bus, with the edges' NATS credentials: one
    whose identity the operator registered serves and is named in the audit; one whose identity
    is not registered holds no provider key, says so, and serves once it is registered."""
    registry = gateway.info.data_dir / "identity" / "edges"
    known_key, known_pub = create("edge-known", tmp_path / "known")
    (registry / known_pub.name).write_bytes(known_pub.read_bytes())
    stranger_key, stranger_pub = create("edge-stranger", tmp_path / "stranger")
    stack = gateway.stack
    stranger = stack.add_edge("edge-stranger", {"GATEWAY_EDGE_IDENTITY_FILE": str(stranger_key)}, wait=False)
    try:
        known = stack.add_edge("edge-known", {"GATEWAY_EDGE_IDENTITY_FILE": str(known_key)})
        key = gateway.new_user_key("identity-e2e")
        answer = OpenAI(base_url=known + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
        assert answer.choices[0].message.content

        def refused() -> bool:
            body = httpx.get(stranger + "/readyz", timeout=10).json()
            return "edge_identity" in body["missing"]

        wait_until(refused, timeout=60, what="keyvault's refusal of the unregistered edge")
        resp = httpx.post(
            stranger + "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "edge_identity_refused"
        assert PROVIDER_KEY not in resp.text

        def audited(action: str, source: str) -> bool:
            found = gateway.admin("GET", "/ai/audit", params={"action": action, "limit": 1000}).json()["data"]
            return any(e["source"].startswith(source) for e in found)

        wait_until(lambda: audited("provider_key.decrypt", "edge-known/edge-"), timeout=30, what="the decrypt audit")
        wait_until(
            lambda: audited("provider_key.fetch_refused", "unverified/edge-"), timeout=30, what="the refusal audit"
        )

        # Registered: the edge's next fetch (it retries on its own) is served; no restart.
        (registry / stranger_pub.name).write_bytes(stranger_pub.read_bytes())
        stack.wait_ready(stranger)
        answer = OpenAI(base_url=stranger + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
        assert answer.choices[0].message.content
    finally:
        for name in ("edge-known", "edge-stranger"):
            if name in stack.supervisor.children:
                stack.supervisor.stop(name)
        for pub in (known_pub, stranger_pub):
            (registry / pub.name).unlink(missing_ok=True)


def test_no_secret_is_on_a_command_line_and_environments_are_private(gateway: Gateway) -> None:
    """Another local user can read any process's command line (/proc/PID/cmdline), not its
    environment: secrets go by file or environment, never as arguments."""
    stack = gateway.stack
    secrets = {gateway.info.admin_key, stack.vault_token, PROVIDER_KEY, *gateway.info.nats_users.values()}
    secrets.discard("")
    checked = 0
    for name in list(stack.supervisor.children):
        pid = stack.supervisor.pid(name)
        if pid is None:
            continue
        pids = [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
        for each in pids:
            argv = Path(f"/proc/{each}/cmdline").read_bytes().decode(errors="replace")
            assert not [s for s in secrets if s in argv], f"{name} (pid {each}) has a secret in its arguments"
            assert Path(f"/proc/{each}/environ").stat().st_mode & 0o077 == 0
            checked += 1
    assert checked >= 6  # NATS, OpenBao, the four services (and the edge's workers)


def test_a_new_client_keys_secret_never_crosses_the_bus_in_plaintext(gateway: Gateway) -> None:
    """Replies to edges are readable by anyone holding the edges' NATS credentials: keyvault
    seals a new key's secret to the one request that asked for it."""
    with BusRecorder(gateway.info.nats_url_for("admin")) as recorder:
        created = gateway.admin("POST", "/ai/keys", json={"user": "sealed-sam", "name": "t"})
        assert created.status_code == 201, created.text
        secret = created.json()["key"]
        assert secret.startswith("sk-sy-") and "sealed_key" not in created.json()
        seen = recorder.seen
        wait_until(
            lambda: (
                any(b"client_keys.create" in m for m in seen)
                and any(b"_INBOX.edge." in m and b'"user":"sealed-sam"' in m for m in seen)
            ),
            what="the create request and its reply",
        )
    assert gateway.admin("GET", "/v1/models", key=secret).status_code == 200
    assert not [m for m in recorder.seen if secret.encode() in m], "the new key's secret crossed the bus"
