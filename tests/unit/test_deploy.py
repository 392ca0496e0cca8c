"""docker-compose.yml, the Dockerfile and the lock file, checked statically (no Docker engine
runs here): every service's environment matches its settings class, and each service
installs only its own dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.edge.settings import EdgeSettings
from services.keyvault.settings import KeyvaultSettings
from services.metering.settings import MeteringSettings
from services.router.settings import RouterSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, type[BaseSettings]] = {
    "edge": EdgeSettings,
    "router": RouterSettings,
    "keyvault": KeyvaultSettings,
    "metering": MeteringSettings,
}
REQUIRED = {
    "edge": {"GATEWAY_NATS_URL", "GATEWAY_ADMIN_KEY", "GATEWAY_HOST", "GATEWAY_PORT"},
    "router": {"GATEWAY_NATS_URL"},
    "keyvault": {"GATEWAY_NATS_URL", "VAULT_ADDR", "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"},
    "metering": {"GATEWAY_NATS_URL", "GATEWAY_CLICKHOUSE_DSN"},
}


def _aliases(settings: type[BaseSettings]) -> set[str]:
    return {str(f.validation_alias) for f in settings.model_fields.values() if f.validation_alias}


@pytest.fixture(scope="module")
def compose() -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_service_environment_matches_its_settings(compose: dict, name: str) -> None:  # type: ignore[type-arg]
    service = compose["services"][name]
    env = set(service["environment"])
    unknown = env - _aliases(SETTINGS[name])
    assert not unknown, f"{name} sets variables its settings class does not read: {unknown}"
    assert REQUIRED[name] <= env
    assert service["build"]["args"]["SERVICE"] == name
    assert (ROOT / "services" / name / "__main__.py").exists()


def test_settings_load_from_the_compose_environment(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    for name, settings in SETTINGS.items():
        for key, value in compose["services"][name]["environment"].items():
            if "${" not in str(value):
                monkeypatch.setenv(key, str(value))
        settings()  # validates types and ranges of every literal value


def test_edges_scale_out_behind_one_published_port(compose: dict) -> None:  # type: ignore[type-arg]
    services = compose["services"]
    assert services["edge"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["edge"]
    assert services["lb"]["ports"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert f"server edge:{services['edge']['environment']['GATEWAY_PORT']}" in nginx
    assert "proxy_buffering off" in nginx
    assert {"nats", "openbao", "clickhouse"} <= set(services)
    assert "--jetstream" in services["nats"]["command"]


def test_dockerfile_copies_every_workspace_member() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = [
        p.relative_to(ROOT) for pattern in root["tool"]["uv"]["workspace"]["members"] for p in ROOT.glob(pattern)
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for member in members:
        if (ROOT / member / "pyproject.toml").exists():
            assert f"COPY {member}/pyproject.toml" in dockerfile


def _locked_deps(package: str) -> str:
    uv = [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]
    out = subprocess.run(
        [*uv, "export", "--frozen", "--no-dev", "--no-hashes", "--package", package],
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
