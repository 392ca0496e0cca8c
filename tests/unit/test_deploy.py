"""docker-compose.yml, its mounted files, the Dockerfile and the lock file, checked statically
(no Docker engine runs here): the compose specification's JSON schema, every cross-reference
(services, volumes, variables, mounted files, ports, NATS users), image versions equal to the
ones the tests run, and each service installing only its own dependencies."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.edge.settings import EdgeSettings
from services.keyvault.settings import KeyvaultSettings
from services.metering.settings import MeteringSettings
from services.router.settings import RouterSettings
from shared.identity import Registry
from shared.settings import ServiceSettings
from stack import nats_auth
from stack.launcher import PORT_VARIABLES
from stack.nats import nats_binary
from stack.openbao import bao_argv

ROOT = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, type[BaseSettings]] = {
    "edge": EdgeSettings,
    "router": RouterSettings,
    "keyvault": KeyvaultSettings,
    "metering": MeteringSettings,
}
REQUIRED = {
    "edge": {"GATEWAY_NATS_URL", "GATEWAY_ADMIN_KEY", "GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_NATS_REPLICAS"},
    "router": {"GATEWAY_NATS_URL", "GATEWAY_ROUTER_PORT", "GATEWAY_NATS_REPLICAS"},
    "keyvault": {"GATEWAY_NATS_URL", "VAULT_ADDR", "GATEWAY_VAULT_APPROLE_DIR", "GATEWAY_KEYVAULT_PORT"},
    "metering": {"GATEWAY_NATS_URL", "GATEWAY_CLICKHOUSE_DSN", "GATEWAY_METERING_PORT", "GATEWAY_NATS_REPLICAS"},
}
NATS_NODES = ("nats-1", "nats-2", "nats-3")
JOBS = {"openbao-init", "edge-identity"}  # run once and exit: no health check, others wait for their success
Compose = dict[str, Any]


def _aliases(settings: type[BaseSettings]) -> set[str]:
    return {str(f.validation_alias) for f in settings.model_fields.values() if f.validation_alias}


@pytest.fixture(scope="module")
def text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def compose(text: str) -> Compose:
    return dict(yaml.safe_load(text))


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v.split(":")[0], v.split(":")[1]) for v in service.get("volumes", [])]


def test_compose_file_follows_the_compose_specification(compose: Compose) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_service_environment_matches_its_settings(compose: Compose, name: str) -> None:
    service = compose["services"][name]
    env = set(service["environment"])
    unknown = env - _aliases(SETTINGS[name])
    assert not unknown, f"{name} sets variables its settings class does not read: {unknown}"
    assert REQUIRED[name] <= env
    assert service["build"]["args"]["SERVICE"] == name
    assert (ROOT / "services" / name / "__main__.py").exists()


def test_settings_load_from_the_compose_environment(compose: Compose, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, settings in SETTINGS.items():
        for key, value in compose["services"][name]["environment"].items():
            if "${" not in str(value):
                monkeypatch.setenv(key, str(value))
        settings()  # validates types and ranges of every literal value


def test_every_reference_resolves(compose: Compose, text: str) -> None:
    services = compose["services"]
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, which it lacks"
            if rule["condition"] == "service_completed_successfully":
                assert target in JOBS
        for source, _ in _mounts(service):
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name} mounts missing file {source}"
            else:
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"

    # Every variable the file reads is documented in deploy/env.example (or has a default).
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / "deploy" / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    for match in re.finditer(r"(?<!\$)\$\{(\w+)(:?[-?][^}]*)?\}", text):
        variable, default = match.group(1), match.group(2) or ""
        assert variable in example or default.startswith((":-", "-")), f"{variable} is not in deploy/env.example"


def test_every_server_has_a_health_check_on_its_own_port(compose: Compose) -> None:
    for name, service in compose["services"].items():
        if name in JOBS:
            assert service["restart"] == "no"
            continue
        assert "healthcheck" in service, f"{name} has no health check"
    for name, variable in PORT_VARIABLES.items():
        service = compose["services"][name]
        port = service["environment"][variable]
        assert service["healthcheck"]["test"] == [
            "CMD",
            "python",
            "-m",
            "shared.probe",
            f"http://127.0.0.1:{port}/readyz",
        ]
        assert int(str(service["stop_grace_period"]).removesuffix("s")) > ServiceSettings().drain_seconds


def test_nats_is_a_three_node_cluster_with_a_user_per_service(compose: Compose) -> None:
    services = compose["services"]
    conf = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    assert "include ./auth.conf" in conf and "jetstream" in conf
    for node in NATS_NODES:
        assert f"nats-route://{node}:6222" in conf
        service = services[node]
        assert service["environment"]["NATS_SERVER_NAME"] == node
        mounts = dict(_mounts(service))
        assert mounts["./deploy/nats/nats.conf"] == "/etc/nats/nats.conf"
        assert mounts["./deploy/nats/auth.conf"] == "/etc/nats/auth.conf"
        for user in (*nats_auth.SERVICES, nats_auth.ADMIN):
            assert nats_auth.password_variable(user) in service["environment"]
    assert (ROOT / "deploy" / "nats" / "auth.conf").read_text() == nats_auth.deploy_file()
    for name in nats_auth.SERVICES:
        env = services[name]["environment"]
        urls = env["GATEWAY_NATS_URL"].split(",")
        password = "${" + nats_auth.password_variable(name) + "}"
        assert urls == [f"nats://{name}:{password}@{node}:4222" for node in NATS_NODES]
        assert env["GATEWAY_NATS_REPLICAS"] == "3"
        assert set(NATS_NODES) <= set(services[name]["depends_on"])


def test_openbao_boots_and_keyvault_gets_its_approle(compose: Compose) -> None:
    services = compose["services"]
    bao, init, keyvault = services["openbao"], services["openbao-init"], services["keyvault"]
    hcl = (ROOT / "deploy" / "openbao.hcl").read_text()
    raft_path = re.search(r'path\s*=\s*"([^"]+)"', hcl)
    assert raft_path is not None
    # The raft store is a volume mounted where the image's openbao user may write.
    assert ("openbao-data", raft_path.group(1)) in _mounts(bao)
    assert raft_path.group(1) == "/openbao/file"
    assert bao["environment"]["BAO_ADDR"] == "http://127.0.0.1:8200"
    script = (ROOT / "deploy" / "init-openbao.sh").read_text()
    init_mounts = dict(_mounts(init))
    assert init_mounts["./deploy/init-openbao.sh"] == init["entrypoint"][-1]
    assert init_mounts["./deploy/keyvault-policy.hcl"] in script
    approle_in_init = init_mounts["openbao-approle"]
    assert f"APPROLE={approle_in_init}" in script
    assert init["environment"]["BAO_ADDR"] == "http://openbao:8200"
    for step in ("operator init", "operator unseal", "enable transit", "kv-v2", "policy write", "enable approle"):
        assert step in script
    keyvault_mounts = {source: target for source, target in _mounts(keyvault)}
    assert keyvault_mounts["openbao-approle"] == keyvault["environment"]["GATEWAY_VAULT_APPROLE_DIR"]
    assert keyvault["depends_on"]["openbao-init"]["condition"] == "service_completed_successfully"
    policy = (ROOT / "deploy" / "keyvault-policy.hcl").read_text()
    assert '"transit/encrypt/switchyard-provider-keys"' in policy and '"switchyard/data/*"' in policy


def test_the_edges_identity_is_made_once_and_registered_with_keyvault(compose: Compose, tmp_path: Path) -> None:
    """The edge-identity job's command, run here with each volume a directory: the edge's key
    file and keyvault's registry it leaves behind work together, and a second run keeps the key."""
    services = compose["services"]
    job, edge, keyvault = services["edge-identity"], services["edge"], services["keyvault"]
    volumes = {source: tmp_path / source for source, _ in _mounts(job)}
    in_job = {target: volumes[source] for source, target in _mounts(job)}
    argv = [str(in_job.get(arg, arg)) for arg in job["command"]]
    owner = argv.index("--owner")
    assert argv[owner + 1] == re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1)  # type: ignore[union-attr]
    argv[owner + 1] = str(os.getuid())  # the edge's uid in the image; ours here
    assert argv[:3] == ["python", "-m", "shared.identity"]
    run = [sys.executable, *argv[1:]]
    subprocess.run(run, check=True, capture_output=True, cwd=ROOT)
    for service in (edge, keyvault):
        assert service["depends_on"]["edge-identity"]["condition"] == "service_completed_successfully"

    def host_path(service: dict[str, Any], path: str) -> Path:
        for source, target in _mounts(service):
            if path == target or path.startswith(target + "/"):
                return volumes[source] / path[len(target) :].lstrip("/")
        raise AssertionError(f"{path} is on no volume the edge-identity job writes")

    key_file = host_path(edge, edge["environment"]["GATEWAY_EDGE_IDENTITY_FILE"])
    identity = EdgeSettings(GATEWAY_EDGE_IDENTITY_FILE=key_file).identity()
    registry = Registry(host_path(keyvault, keyvault["environment"]["GATEWAY_EDGE_IDENTITIES_DIR"]))
    assert registry.verify(identity.fetch("pk", "edge-1")).name == "edges"
    assert all(m.endswith(":ro") for m in edge["volumes"] if m.startswith("edge-identity:"))
    subprocess.run(run, check=True, capture_output=True, cwd=ROOT)  # the next `up`: same identity
    assert EdgeSettings(GATEWAY_EDGE_IDENTITY_FILE=key_file).identity().public_key == identity.public_key


def test_edges_scale_behind_nginx_that_resolves_again(compose: Compose) -> None:
    services = compose["services"]
    assert services["edge"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["edge"]
    assert services["lb"]["ports"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", nginx)
    assert f"server edge:{services['edge']['environment']['GATEWAY_PORT']} resolve;" in nginx
    assert "zone switchyard_edge" in nginx  # `resolve` needs a shared zone
    assert "proxy_buffering off" in nginx and "proxy_next_upstream error" in nginx
    assert "non_idempotent;" not in nginx  # a started request is never sent to a second edge
    assert "location = /lb-healthz" in nginx and "/lb-healthz" in str(services["lb"]["healthcheck"]["test"])


def _version(argv: list[str]) -> str:
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    found = re.search(r"v?(\d+\.\d+\.\d+)", out)
    assert found, out
    return found.group(1)


def test_images_are_the_versions_the_tests_run(compose: Compose) -> None:
    import chdb

    services = compose["services"]
    nats = _version([nats_binary(), "--version"])
    for node in NATS_NODES:
        assert services[node]["image"] == f"nats:{nats}-alpine"
    bao = _version([bao_argv(Path("x"))[0], "version"])
    assert services["openbao"]["image"] == services["openbao-init"]["image"] == f"openbao/openbao:{bao}"
    clickhouse = str(chdb.query("SELECT version()", "CSV")).strip().strip('"')
    assert services["clickhouse"]["image"] == "clickhouse/clickhouse-server:" + ".".join(clickhouse.split(".")[:2])


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".data", ".env", ".git"} <= ignored


def test_dockerfile_copies_every_workspace_member() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = [
        p.relative_to(ROOT) for pattern in root["tool"]["uv"]["workspace"]["members"] for p in ROOT.glob(pattern)
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for member in members:
        if (ROOT / member / "pyproject.toml").exists():
            assert f"COPY {member}/pyproject.toml" in dockerfile


def _uv() -> list[str]:
    """uv as the Makefile found it (it passes SWITCHYARD_UV to the tests), else found the same
    way: on PATH, in .tools (where the Makefile installs it when there is none), or as a module
    of this Python. The test venv itself has no uv."""
    if os.environ.get("SWITCHYARD_UV"):
        return shlex.split(os.environ["SWITCHYARD_UV"])
    for candidate in (shutil.which("uv"), ROOT / ".tools" / "bin" / "uv"):
        if candidate and Path(candidate).exists():
            return [str(candidate)]
    return [sys.executable, "-m", "uv"]


def _locked_deps(package: str) -> str:
    out = subprocess.run(
        [*_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--package", package],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.lower()


def test_each_service_installs_only_what_it_uses() -> None:
    edge = _locked_deps("switchyard-edge")
    assert "fastapi==" in edge and "aiohttp==" in edge and "nats-py==" in edge
    assert "chdb" not in edge and "clickhouse-connect" not in edge and "hvac" not in edge
    metering = _locked_deps("switchyard-metering")
    assert "clickhouse-connect==" in metering and "chdb==" in metering
    assert "fastapi" not in metering and "hvac" not in metering
    keyvault = _locked_deps("switchyard-keyvault")
    assert "hvac==" in keyvault and "chdb" not in keyvault and "fastapi" not in keyvault


def test_the_lock_installs_on_every_python_the_project_declares() -> None:
    """requires-python says 3.11 to 3.13: every locked package has a wheel for each (or one for
    any Python), so no install on 3.12 or 3.13 falls back to building from source."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert lock["requires-python"] == ">=3.11, <3.14"
    missing = []
    for package in lock["package"]:
        wheels = [w["url"].rsplit("/", 1)[1] for w in package.get("wheels", [])]
        if not wheels or any(re.search(r"-py3-none-|-py2\.py3-none-|-abi3-", w) for w in wheels):
            continue  # a wheel for any Python 3 (a bundled binary, or the stable ABI)
        tags = {m.group(1) for w in wheels if (m := re.search(r"-(cp3\d+)-", w))}
        missing += [f"{package['name']} ({tag})" for tag in ("cp311", "cp312", "cp313") if tag not in tags]
    assert not missing, missing
