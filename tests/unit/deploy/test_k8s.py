"""deploy/k8s: valid against the Kubernetes schemas (offline), probes and requests, secrets as files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from jobs.registry import WORKERS
from core.settings import Settings
from tests.unit.deploy.deployment_files import (
    DAEMONS,
    DEPLOY,
    command_key,
    secret_in_environment,
    unknown_settings,
)

K8S = DEPLOY / "k8s"
FILES = sorted(K8S.glob("*.yaml"))
# The oldest Kubernetes the manifests are written for, and the newest whose schemas the package ships.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
WORKLOADS = ("Deployment", "StatefulSet", "Job")
NO_PROBES = "virtuoz.io/probes"  # a workload without probes says why


def documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@pytest.fixture(scope="module")
def resources() -> list[dict]:
    return [resource for path in FILES for resource in documents(path)]


def of_kind(resources: list[dict], kind: str) -> list[dict]:
    return [resource for resource in resources if resource["kind"] == kind]


def named(resources: list[dict], kind: str, name: str) -> dict:
    [resource] = [resource for resource in of_kind(resources, kind) if resource["metadata"]["name"] == name]
    return resource


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return spec["containers"] + spec.get("initContainers", [])


def test_there_are_manifests():
    assert len(FILES) >= 10


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_each_manifest_validates_strictly(path, version):
    # Strict: a misspelt or misplaced field is an error, not something the API server drops silently.
    # A kind without a bundled schema raises too (SchemaNotFoundError), never passes unchecked.
    for resource in documents(path):
        kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_one_kind_per_file_in_the_namespace(path):
    resources = documents(path)
    assert len({resource["kind"] for resource in resources}) == 1
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "virtuoz"


def test_every_process_has_a_workload(resources):
    commands = {command_key(container["args"]) for workload in resources if workload["kind"] in WORKLOADS
                for container in pod_spec(workload)["containers"] if "args" in container}
    assert DAEMONS - commands == set()
    assert {f"worker {name}" for name in WORKERS} <= commands


def test_every_container_requests_cpu_and_memory(resources):
    for workload in resources:
        if workload["kind"] in WORKLOADS:
            for container in containers(workload):
                requests = container.get("resources", {}).get("requests", {})
                assert {"cpu", "memory"} <= set(requests), (workload["metadata"]["name"], container["name"])
                assert "memory" in container["resources"].get("limits", {}), workload["metadata"]["name"]


def test_every_deployment_has_probes_or_says_why_not(resources):
    for deployment in of_kind(resources, "Deployment") + of_kind(resources, "StatefulSet"):
        reason = deployment["metadata"].get("annotations", {}).get(NO_PROBES)
        for container in pod_spec(deployment)["containers"]:
            has_probes = {"readinessProbe", "livenessProbe"} <= set(container)
            assert has_probes != bool(reason), deployment["metadata"]["name"]


def test_the_api_is_probed_scraped_and_kept_available(resources):
    api = named(resources, "Deployment", "virtuoz-api")
    [container] = pod_spec(api)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["spec"]["replicas"] >= 2
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    [port] = container["ports"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port["containerPort"]),
                           "prometheus.io/path": "/metrics"}
    labels = api["spec"]["template"]["metadata"]["labels"]
    budget = named(resources, "PodDisruptionBudget", "virtuoz-api")
    assert budget["spec"]["selector"]["matchLabels"] == labels and budget["spec"]["minAvailable"] == 1
    service = named(resources, "Service", "virtuoz-api")
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]


def test_pods_run_as_the_images_non_root_user_read_only(resources):
    for workload in resources:
        if workload["kind"] in WORKLOADS:
            security = pod_spec(workload)["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, workload["metadata"]["name"]
            for container in containers(workload):
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_no_secret_is_committed_nor_in_an_environment(resources):
    assert of_kind(resources, "Secret") == []  # the operator creates them (README, "Deploying")
    problems = []
    for config_map in of_kind(resources, "ConfigMap"):
        for variable, value in config_map.get("data", {}).items():
            problems.append(secret_in_environment(variable, value))
    for workload in resources:
        if workload["kind"] in WORKLOADS:
            for container in containers(workload):
                for variable in container.get("env", []):
                    assert "valueFrom" not in variable, "secrets are files, not environment variables"
                    problems.append(secret_in_environment(variable["name"], variable.get("value", "")))
    assert [problem for problem in problems if problem] == []


def test_secret_files_are_mounted_where_the_settings_read_them(resources):
    settings = {}
    for config_map in of_kind(resources, "ConfigMap"):
        settings.update(config_map.get("data", {}))
    for workload in resources:
        if workload["kind"] not in WORKLOADS:
            continue
        volumes = {volume["name"]: volume for volume in pod_spec(workload)["volumes"]}
        for container in pod_spec(workload)["containers"]:
            environment = dict(settings) if container.get("envFrom") else {}
            environment.update({variable["name"]: variable["value"] for variable in container.get("env", [])})
            # Secrets, and the signer's passphrase copied from its Secret into memory.
            mounts = [mount["mountPath"] for mount in container["volumeMounts"]
                      if {"secret", "emptyDir"} & set(volumes.get(mount["name"], {}))]
            for variable, path in environment.items():
                if variable.endswith(("_FILE", "_DIR")) and path.startswith("/run/"):
                    assert any(path.startswith(mount + "/") or path == mount for mount in mounts), \
                        (workload["metadata"]["name"], variable)


def test_the_signer_keeps_its_own_volume_and_secret(resources):
    signer = named(resources, "StatefulSet", "virtuoz-signer")
    [claim] = signer["spec"]["volumeClaimTemplates"]
    [container] = pod_spec(signer)["containers"]
    assert container["args"] == ["signer"]
    assert "envFrom" not in container  # none of the platform's settings
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/virtuoz-signer"} in container["volumeMounts"]
    secrets = {volume["secret"]["secretName"] for volume in pod_spec(signer)["volumes"] if "secret" in volume}
    assert secrets == {"virtuoz-signer"}
    for workload in resources:
        if workload["kind"] in WORKLOADS and workload is not signer:
            assert "virtuoz-signer" not in str(pod_spec(workload)["volumes"]), workload["metadata"]["name"]


def test_the_signer_reaches_only_redis_and_dns(resources):
    signer = named(resources, "StatefulSet", "virtuoz-signer")
    [policy] = [policy for policy in of_kind(resources, "NetworkPolicy")
                if policy["spec"]["podSelector"]["matchLabels"] == signer["spec"]["selector"]["matchLabels"]]
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    # Nothing reaches it but Prometheus, on its metrics port: the one port it serves.
    [scraper] = policy["spec"]["ingress"]
    assert [peer["podSelector"]["matchLabels"] for peer in scraper["from"]] == [{"app.kubernetes.io/name": "prometheus"}]
    assert scraper["ports"] == [{"protocol": "TCP", "port": 9100}]
    redis, dns = policy["spec"]["egress"]
    assert [peer["podSelector"]["matchLabels"] for peer in redis["to"]] == [{"app.kubernetes.io/name": "redis"}]
    assert redis["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert [peer["podSelector"]["matchLabels"] for peer in dns["to"]] == [{"k8s-app": "kube-dns"}]
    assert {port["port"] for port in dns["ports"]} == {53}


def test_the_migration_is_a_job(resources):
    [job] = of_kind(resources, "Job")
    [container] = pod_spec(job)["containers"]
    assert container["args"] == ["migrate"] and pod_spec(job)["restartPolicy"] == "Never"


def test_every_setting_named_exists_and_parses(resources, monkeypatch):
    environment = {}
    for config_map in of_kind(resources, "ConfigMap"):
        environment.update(config_map.get("data", {}))
    for workload in resources:
        if workload["kind"] in WORKLOADS:
            for container in containers(workload):
                environment.update({variable["name"]: variable["value"] for variable in container.get("env", [])})
    assert unknown_settings(environment) == []
    for variable in list(environment):
        monkeypatch.delenv(variable, raising=False)
    # The files are the cluster's; every other value must be one the settings accept.
    for variable, value in environment.items():
        if not variable.endswith("_FILE"):
            monkeypatch.setenv(variable, value)
    settings = Settings()
    assert settings.is_production and settings.api_host == "0.0.0.0"
