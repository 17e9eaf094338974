"""deploy/compose.yaml: a service for every process, the signer alone with Redis, secrets as files."""

from __future__ import annotations

import posixpath

import pytest
import yaml

from jobs.registry import WORKERS
from tests.unit.deploy.deployment_files import (
    BY_HAND,
    DAEMONS,
    DEPLOY,
    command_key,
    readme_commands,
    secret_in_environment,
    unknown_settings,
)

SECRETS_DIR = "/run/secrets"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def platform_services(compose: dict) -> dict[str, dict]:
    """The services that run the VirtuOZ image (a command of the `virtuoz` console script)."""
    return {name: service for name, service in compose["services"].items()
            if "virtuoz" in str(service.get("image", "")) and "entrypoint" not in service}


def replicas(service: dict) -> int:
    return service.get("deploy", {}).get("replicas", 1)


def mounted_secrets(service: dict) -> dict[str, str]:
    """Each secret the service mounts: its path in the container → the secret's name."""
    mounts = {}
    for secret in service.get("secrets", []):
        source, target = (secret, secret) if isinstance(secret, str) else (secret["source"], secret.get("target"))
        mounts[posixpath.join(SECRETS_DIR, target or source)] = source
    return mounts


def test_every_readme_command_is_a_process_or_run_by_hand():
    # A command added to the README's process table must be placed: a service, or an operator's command.
    commands = readme_commands()
    assert {f"worker {name}" for name in WORKERS} <= commands
    assert commands - DAEMONS - BY_HAND == set()


def test_every_process_has_a_service(compose):
    commands = {command_key(service["command"]) for service in platform_services(compose).values()}
    assert DAEMONS - commands == set()


def test_replicas(compose):
    services = platform_services(compose)
    by_command: dict[str, list[dict]] = {}
    for service in services.values():
        by_command.setdefault(command_key(service["command"]), []).append(service)
    assert [replicas(api) for api in by_command["api"]] == [2]
    assert [replicas(scheduler) for scheduler in by_command["scheduler"]] == [2]
    # One scanner per chain, each with a standby: one service per chain, two replicas.
    chains = [service["command"][service["command"].index("--chain") + 1] for service in by_command["scanner"]]
    assert len(chains) == len(set(chains)) >= 1
    assert all(replicas(scanner) == 2 for scanner in by_command["scanner"])
    assert [replicas(signer) for signer in by_command["signer"]] == [1]


def test_the_migration_runs_once_before_every_other_process(compose):
    services = platform_services(compose)
    [migrate] = [name for name, service in services.items() if service["command"] == ["migrate"]]
    assert services[migrate].get("restart") == "no"
    for name, service in services.items():
        if name not in (migrate, "signer"):
            assert service["depends_on"][migrate]["condition"] == "service_completed_successfully", name


def test_the_signer_is_alone_with_redis_on_an_internal_network(compose):
    signer = compose["services"]["signer"]
    assert signer["command"] == ["signer"]
    shared = {network: {name for name, service in compose["services"].items() if network in service.get("networks", [])}
              for network in signer["networks"]}
    # Redis to take requests and answer, Prometheus to read its /metrics: no one else, no way out.
    assert sorted(shared.values(), key=sorted) == [{"prometheus", "signer"}, {"redis", "signer"}]
    assert all(compose["networks"][network]["internal"] is True for network in shared)
    assert "ports" not in signer


def test_the_signer_mounts_none_of_the_platform_secrets(compose):
    signer = set(mounted_secrets(compose["services"]["signer"]).values())
    platform = set()
    for name, service in platform_services(compose).items():
        if name != "signer":
            platform |= set(mounted_secrets(service).values())
    assert signer & platform == {"redis-url"}  # the broker they share
    assert "signer-passphrase" not in platform


def test_no_secret_value_in_any_environment(compose):
    problems = []
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for variable, value in environment.items():
            problem = secret_in_environment(variable, value)
            if problem:
                problems.append(f"{name}: {problem}")
    assert problems == []


def test_every_secret_file_setting_names_a_mounted_secret(compose):
    for name, service in compose["services"].items():
        mounts = mounted_secrets(service)
        for variable, value in service.get("environment", {}).items():
            if variable.endswith(("_FILE", "_DIR")) and str(value).startswith(SECRETS_DIR + "/"):
                inside = [path for path in mounts if path == value or path.startswith(value + "/")]
                assert inside, f"{name}: {variable}={value} is not a mounted secret"


def test_every_secret_comes_from_a_file(compose):
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"file"}, name
        assert secret["file"].startswith("./secrets/"), name


def test_every_setting_named_exists(compose):
    for name, service in compose["services"].items():
        assert unknown_settings(service.get("environment", {})) == [], name
