"""deploy/k8s, the kustomize base, checked without a cluster (no kubectl or helm here): every
manifest against Kubernetes' schemas (kubernetes-validate, strict), and every cross-reference
in Python: selectors, ports, probes, Secret and ConfigMap keys, the HPA's and PDB's targets,
and each container's variables against its service's settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.router.compile import compile_routes
from shared.catalog import load_catalog
from shared.gateway_config import parse_config
from stack import nats_auth
from stack.launcher import PORT_VARIABLES
from tests.unit.test_deploy import SETTINGS

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # the oldest minor the base targets (native preStop sleep: 1.30+)
HELPERS = {"NATS_HOST", "NATS_PASSWORD"}  # only used inside $(...) references
Doc = dict[str, Any]


def _documents() -> list[Doc]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def _of(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] == kind}


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    images = {i["name"] for i in kustomization["images"]}
    assert images == {f"switchyard-{s}" for s in SETTINGS}


@pytest.mark.parametrize("doc", _documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_kubernetes(doc: Doc) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_service_has_a_deployment_with_probes_on_its_port() -> None:
    deployments = _of("Deployment")
    assert set(deployments) == set(SETTINGS)
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        (container,) = spec["template"]["spec"]["containers"]
        assert container["image"] == f"switchyard-{name}"
        env = {e["name"]: e for e in container["env"]}
        port_name, port = next((p["name"], p["containerPort"]) for p in container["ports"])
        assert env[PORT_VARIABLES[name]]["value"] == str(port)
        assert env["GATEWAY_HOST"]["value"] == "0.0.0.0"  # the kubelet probes the pod's address
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
        assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > 30  # the drain fits
        user = container["env"][0]["valueFrom"]["secretKeyRef"]["key"].removesuffix("-password")
        assert user == name and user in nats_auth.SERVICES
        assert env["GATEWAY_NATS_URL"]["value"] == f"nats://{name}:$(NATS_PASSWORD)@$(NATS_HOST):4222"


def test_container_variables_are_ones_the_service_reads() -> None:
    config = _of("ConfigMap")["switchyard-config"]["data"]
    for name, deployment in _of("Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        aliases = {str(f.validation_alias) for f in SETTINGS[name].model_fields.values() if f.validation_alias}
        names = [e["name"] for e in container["env"]]
        unknown = set(names) - aliases - HELPERS
        assert not unknown, f"{name} sets variables it does not read: {unknown}"
        shared = set(config) - HELPERS - {"VAULT_ADDR"}
        assert shared <= aliases, f"{name} does not read {shared - aliases}"
        # A $(VAR) reference must name a variable defined before it (or from the ConfigMap).
        for i, entry in enumerate(container["env"]):
            for ref in re.findall(r"\$\((\w+)\)", str(entry.get("value", ""))):
                assert ref in names[:i] or ref in config, f"{name}: $({ref}) is not defined before {entry['name']}"


def test_every_secret_and_config_reference_exists() -> None:
    secrets = {name: set(doc["stringData"]) for name, doc in _of("Secret").items()}
    configs = {name: set(doc["data"]) for name, doc in _of("ConfigMap").items()}
    for name, deployment in _of("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], f"{name}: secret {ref['name']} has no {ref['key']}"
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in configs
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
    keyvault = _of("Deployment")["keyvault"]["spec"]["template"]["spec"]
    (container,) = keyvault["containers"]
    approle_dir = next(e["value"] for e in container["env"] if e["name"] == "GATEWAY_VAULT_APPROLE_DIR")
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == approle_dir)
    secret = next(v for v in keyvault["volumes"] if v["name"] == mount["name"])["secret"]["secretName"]
    assert secrets[secret] == {"role_id", "secret_id"}  # the files KeyvaultSettings.approle() reads


def _env_value(container: Doc, name: str) -> str:
    return str(next(e["value"] for e in container["env"] if e["name"] == name))


def _mounted(pod: Doc, container: Doc, path: str) -> Doc:
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == path)
    assert mount.get("readOnly") is True
    return dict(next(v for v in pod["volumes"] if v["name"] == mount["name"]))


def test_the_edges_identity_and_keyvaults_registry_are_mounted_where_they_are_read() -> None:
    edge = _of("Deployment")["edge"]["spec"]["template"]["spec"]
    keyvault = _of("Deployment")["keyvault"]["spec"]["template"]["spec"]
    key_file = Path(_env_value(edge["containers"][0], "GATEWAY_EDGE_IDENTITY_FILE"))
    secret = _mounted(edge, edge["containers"][0], str(key_file.parent))["secret"]
    assert key_file.name in _of("Secret")[secret["secretName"]]["stringData"]
    assert secret["defaultMode"] & 0o007 == 0  # EdgeIdentity.load refuses a key other users may read
    registry = _env_value(keyvault["containers"][0], "GATEWAY_EDGE_IDENTITIES_DIR")
    config = _mounted(keyvault, keyvault["containers"][0], registry)["configMap"]["name"]
    # The registry entry of the edges' identity, named as the files keyvault reads.
    assert f"{key_file.stem}.pub" in _of("ConfigMap")[config]["data"]


def test_the_router_reads_the_routing_configuration_kustomize_generates() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    files = generated["switchyard-routing"]["files"]
    assert all((K8S / f).is_file() for f in files)
    router = _of("Deployment")["router"]["spec"]["template"]["spec"]
    (container,) = router["containers"]
    path = Path(next(e["value"] for e in container["env"] if e["name"] == "GATEWAY_CONFIG"))
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    volume = next(v for v in router["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "switchyard-routing"
    assert path.name in {Path(f).name for f in files}
    # The file shipped is a valid configuration that fits the catalog.
    config, _ = parse_config((K8S / files[0]).read_text())
    compile_routes(load_catalog(), {}, config=config)


def test_services_select_their_pods_and_target_a_named_port() -> None:
    deployments = _of("Deployment")
    for name, service in _of("Service").items():
        deployment = deployments[name]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        port_names = {p["name"] for p in container["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_the_edge_scales_and_keeps_serving_through_disruptions() -> None:
    edge = _of("Deployment")["edge"]
    (hpa,) = _of("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "edge"}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = _of("PodDisruptionBudget")["edge"]
    pod_labels = edge["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = edge["spec"]["template"]["spec"]["containers"]
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    grace = edge["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= container["lifecycle"]["preStop"]["sleep"]["seconds"] + 30


def test_metering_runs_two_replicas_that_a_rollout_or_a_drain_never_takes_both_of() -> None:
    metering = _of("Deployment")["metering"]
    assert metering["spec"]["replicas"] >= 2  # active-active on one durable consumer
    rolling = metering["spec"]["strategy"]["rollingUpdate"]
    assert metering["spec"]["strategy"]["type"] == "RollingUpdate" and rolling["maxUnavailable"] == 1
    pdb = _of("PodDisruptionBudget")["metering"]
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = metering["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = metering["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "GATEWAY_CLICKHOUSE_DSN" in env  # a server: the embedded engine allows one process
