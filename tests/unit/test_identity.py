"""Edge identities (shared/identity.py) and keyvault's delivery of provider keys to them, on a
real nats-server and a real OpenBao: only a fetch signed by a registered identity gets keys,
the audit names that identity, and removing it from the registry cuts the edge off at its next
fetch."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from services.edge.credentials import Credentials
from services.keyvault.app import Keyvault
from services.keyvault.settings import KeyvaultSettings
from services.keyvault.vault import Vault
from shared import subjects
from shared.bus import Bus, Msg
from shared.catalog import load_catalog
from shared.errors import GatewayError
from shared.events import AuditEvent
from shared.identity import EdgeIdentity, IdentityError, Registry, create, main, public_pem
from shared.messages import ProviderKeyFetch, SealedProviderKeys
from shared.sealing import Recipient, SealingError
from tests.servers import NatsServer, VaultServer, keyvault_service


def _registry(tmp_path: Path, **identities: EdgeIdentity) -> Registry:
    folder = tmp_path / "registry"
    folder.mkdir(exist_ok=True)
    for name, identity in identities.items():
        (folder / f"{name}.pub").write_bytes(identity.public_pem())
    return Registry(folder)


def _signed(
    identity: EdgeIdentity, public_key: str = "pk", instance: str = "edge-1", at: float | None = None
) -> ProviderKeyFetch:
    return identity.fetch(public_key, instance, issued_at=at)


def test_a_fetch_signed_by_a_registered_identity_is_verified_and_named(tmp_path: Path) -> None:
    edge = EdgeIdentity.generate()
    assert _registry(tmp_path, eu_west=edge).verify(_signed(edge)).name == "eu_west"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"public_key": "attackers-key"}, "signature does not match"),  # sealed to someone else
        ({"edge_instance": "edge-2"}, "signature does not match"),
        ({"issued_at": -5.0}, "signature does not match"),  # another time (5 s earlier), same signature
        ({"signature": base64.b64encode(b"x" * 64).decode()}, "signature does not match"),
        ({"signature": "not base64!"}, "signature does not match"),
        ({"signature": ""}, "not signed"),
        ({"identity": ""}, "not signed"),
    ],
)
def test_a_changed_or_unsigned_fetch_is_refused(tmp_path: Path, change: dict, reason: str) -> None:  # type: ignore[type-arg]
    edge = EdgeIdentity.generate()
    fetch = _signed(edge)
    if "issued_at" in change:  # relative to the signing time: parameters are made at collection
        change = {"issued_at": fetch.issued_at + change["issued_at"]}
    with pytest.raises(IdentityError, match=reason):
        _registry(tmp_path, edge_a=edge).verify(fetch.model_copy(update=change))


def test_unregistered_stale_and_removed_identities_are_refused(tmp_path: Path) -> None:
    edge, stranger = EdgeIdentity.generate(), EdgeIdentity.generate()
    registry = _registry(tmp_path, edge_a=edge)
    with pytest.raises(IdentityError, match="not registered"):
        registry.verify(_signed(stranger))
    for at in (time.time() - 400, time.time() + 400, math.nan):
        with pytest.raises(IdentityError, match="away from keyvault's clock"):
            registry.verify(_signed(edge, at=at))
    (registry.directory / "edge_a.pub").unlink()  # revoked: read again at the next fetch
    with pytest.raises(IdentityError, match="not registered"):
        registry.verify(_signed(edge))


def test_a_bad_registry_entry_is_skipped_not_fatal(tmp_path: Path) -> None:
    edge = EdgeIdentity.generate()
    registry = _registry(tmp_path, edge_a=edge)
    (registry.directory / "garbage.pub").write_text("not a key")
    (registry.directory / "-bad name.pub").write_bytes(EdgeIdentity.generate().public_pem())
    (registry.directory / "notes.txt").write_text("ignored: not a .pub")
    assert [name for name, _ in registry.load().values()] == ["edge_a"]
    assert registry.verify(_signed(edge)).name == "edge_a"
    with pytest.raises(IdentityError, match="cannot read the edge identity registry"):
        Registry(tmp_path / "missing").verify(_signed(edge))


def test_identity_files_are_private_never_overwritten_and_openssl_compatible(tmp_path: Path) -> None:
    key_path, pub_path = create("edge-a", tmp_path / "ids")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    identity = EdgeIdentity.load(key_path)
    assert pub_path.read_bytes() == identity.public_pem() == public_pem(key_path)
    with pytest.raises(IdentityError, match="never overwritten"):
        create("edge-a", tmp_path / "ids")
    with pytest.raises(IdentityError, match="not an identity name"):
        create("../escape", tmp_path / "ids")
    os.chmod(key_path, 0o440)  # a Kubernetes Secret mounted for the pod's group
    assert EdgeIdentity.load(key_path).public_key == identity.public_key
    for mode in (0o644, 0o604, 0o660):
        os.chmod(key_path, mode)
        with pytest.raises(IdentityError, match="open to other users"):
            EdgeIdentity.load(key_path)
    with pytest.raises(IdentityError, match="cannot read"):
        EdgeIdentity.load(tmp_path / "absent.key")

    # A key made by openssl works as well, and its registry entry is what openssl derives.
    made = tmp_path / "openssl.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(made)], check=True)
    os.chmod(made, 0o600)
    derived = subprocess.run(["openssl", "pkey", "-in", str(made), "-pubout"], check=True, capture_output=True)
    assert EdgeIdentity.load(made).public_pem() == derived.stdout
    rsa = tmp_path / "rsa.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-out", str(rsa)], check=True, capture_output=True)
    os.chmod(rsa, 0o600)
    with pytest.raises(IdentityError, match="not an Ed25519 key"):
        EdgeIdentity.load(rsa)


def test_the_command_line_makes_and_prints_identities(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "edge-b", str(tmp_path)]) == 0
    assert main(["public", str(tmp_path / "edge-b.key")]) == 0
    assert capsys.readouterr().out.endswith((tmp_path / "edge-b.pub").read_text())
    assert main(["new", "edge-b", str(tmp_path)]) == 1
    assert "never overwritten" in capsys.readouterr().err
    # `ensure` (compose's job, every start) keeps an identity and registers it.
    first = (tmp_path / "edge-b.key").read_bytes()
    assert (
        main(["ensure", "edge-b", str(tmp_path), "--registry", str(tmp_path / "registry"), "--owner", str(os.getuid())])
        == 0
    )
    assert (tmp_path / "edge-b.key").read_bytes() == first
    assert (tmp_path / "registry" / "edge-b.pub").read_bytes() == (tmp_path / "edge-b.pub").read_bytes()
    assert main(["ensure", "edge-c", str(tmp_path / "new")]) == 0
    assert stat.S_IMODE((tmp_path / "new" / "edge-c.key").stat().st_mode) == 0o600


def test_keyvault_delivers_only_to_registered_edges_and_audits_who(
    tmp_path: Path, nats_server: NatsServer, vault_server: VaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for provider in load_catalog().providers.values():
        if provider.key_env:
            monkeypatch.delenv(provider.key_env, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-identity-canary-0001")  # imported into Vault at start
    edge_a, stranger = EdgeIdentity.generate(), EdgeIdentity.generate()
    registry = _registry(tmp_path, edge_a=edge_a)
    vault = vault_server

    async def run() -> None:
        service = await keyvault_service(nats_server.url, vault, registry.directory)
        bus = service.bus
        edge_bus = Bus(nats_server.url, "edge-under-test")
        await edge_bus.connect(deadline=10)
        audit: list[AuditEvent] = []
        audited = asyncio.Event()

        async def on_audit(msg: Msg) -> None:
            audit.append(AuditEvent.model_validate_json(msg.data))
            audited.set()

        await edge_bus.subscribe(subjects.AUDIT_SUBJECT, on_audit)
        stop = asyncio.Event()
        try:
            await service.start()
            await service.prepare_vault(stop)

            async def next_audit(action: str) -> AuditEvent:
                while True:
                    found = [e for e in audit if e.action == action]
                    if found:
                        audit.clear()
                        return found[-1]
                    audited.clear()
                    await asyncio.wait_for(audited.wait(), 10)

            # A registered edge gets the key, and the audit names its identity.
            trusted = Credentials(edge_bus, "edge-1", ttl=600, identity=edge_a)
            await trusted.refresh()
            assert trusted.pick("openai", "gpt-4o").secret == "sk-identity-canary-0001"
            decrypted = await next_audit("provider_key.decrypt")
            assert decrypted.source == "edge_a/edge-1"

            # The edges' NATS access alone gets nothing: an unregistered identity is refused,
            # audited, and the edge says so to its clients and its load balancer.
            untrusted = Credentials(edge_bus, "edge-2", ttl=600, identity=stranger)
            with pytest.raises(GatewayError) as refused:
                await untrusted.refresh()
            assert refused.value.code == "edge_identity_refused" and refused.value.status == 403
            assert untrusted.untrusted is not None and "not registered" in untrusted.untrusted
            with pytest.raises(GatewayError) as answer:
                untrusted.pick("openai", "gpt-4o")
            assert answer.value.status == 503 and answer.value.code == "edge_identity_refused"
            assert "not registered" not in answer.value.message  # the reason is the operator's, in the log
            refusal = await next_audit("provider_key.fetch_refused")
            assert refusal.status == 403 and refusal.source == "unverified/edge-2"

            # A registered edge's signed fetch, replayed by someone else, is sealed to the
            # edge's ephemeral key; with the attacker's key in its place it is refused.
            thief = Recipient()
            victim = Recipient()
            signed = _signed(edge_a, public_key=victim.public_key_b64)
            replayed = await edge_bus.request(subjects.PROVIDER_KEYS_FETCH, signed, SealedProviderKeys)
            sealed = replayed.keys[0]
            with pytest.raises(SealingError):
                thief.open(sealed.sealed, context=sealed.id.encode())
            assert victim.open(sealed.sealed, context=sealed.id.encode()) == b"sk-identity-canary-0001"
            swapped = signed.model_copy(update={"public_key": thief.public_key_b64})
            with pytest.raises(GatewayError, match="signature does not match"):
                await edge_bus.request(subjects.PROVIDER_KEYS_FETCH, swapped, SealedProviderKeys)

            # Revoked: removed from the registry, the edge is refused at its next fetch and
            # drops the keys it held; registered again, it is served again. No restart.
            (registry.directory / "edge_a.pub").unlink()
            with pytest.raises(GatewayError):
                await trusted.refresh()
            assert trusted.usable("openai") == 0 and trusted.untrusted is not None
            (registry.directory / "edge_a.pub").write_bytes(edge_a.public_pem())
            await trusted.refresh()
            assert trusted.untrusted is None and trusted.pick("openai", "gpt-4o").secret == "sk-identity-canary-0001"
        finally:
            stop.set()
            await service.stop()
            await bus.close(2)
            await edge_bus.close()

    asyncio.run(run())


def test_keyvault_will_not_start_without_a_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_EDGE_IDENTITIES_DIR", raising=False)
    settings = KeyvaultSettings(GATEWAY_NATS_URL="nats://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="GATEWAY_EDGE_IDENTITIES_DIR is not set"):
        vault = Vault("http://127.0.0.1:1", "token", transit_mount="t", transit_key="k", kv_mount="kv")
        Keyvault(settings, Bus(settings.nats_url, "kv"), vault)


def test_the_edge_refuses_to_start_without_a_usable_identity(tmp_path: Path) -> None:
    """Its parent checks the file before any worker starts (without loading the cryptography
    library: it serves nothing), and says what is wrong."""
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    key, _ = create("edge-a", tmp_path)
    os.chmod(key, 0o644)
    for identity, said in ((None, "GATEWAY_EDGE_IDENTITY_FILE is not set"), (key, "open to other users")):
        run_env = env | ({"GATEWAY_EDGE_IDENTITY_FILE": str(identity)} if identity else {})
        done = subprocess.run(
            [sys.executable, "-m", "services.edge"], env=run_env | {"GATEWAY_EDGE_WORKERS": "2"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and said in done.stderr + done.stdout
