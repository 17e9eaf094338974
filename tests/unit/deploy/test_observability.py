"""deploy/prometheus and deploy/grafana: the rules and panels parse, and every metric they name is
one some process exports, spelt as Prometheus sees it (a counter's ``_total``, a histogram's
``_bucket``): an alert on a misspelt or renamed metric never fires, and nothing else would say so."""

from __future__ import annotations

import importlib
import json
import re

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from api.metrics import HttpMetrics
from cli import registry
from jobs.metrics import watch_queues
from scanner.metrics import ScannerMetrics
from tests.unit.deploy.deployment_files import DEPLOY

RULES = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
ALERTS = [rule for group in RULES["groups"] for rule in group["rules"]]
SCRAPE = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
DASHBOARD = json.loads((DEPLOY / "grafana" / "virtuoz.json").read_text())
TARGETS = [target for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]

# The modules that define the metrics of the processes other than the API, in the default registry.
PROCESS_METRICS = ("jobs.metrics", "jobs.scheduler", "signer.answers", "signer.daemon", "custody.withdrawals.metrics",
                   "custody.treasury.metrics", "custody.treasury.hot_cold", "custody.treasury.reserves",
                   "compliance.travel_rule.server", "compliance.reporting.metrics")
PROMETHEUS_OWN = {"up"}  # written by Prometheus for each target, exported by nobody
# The series each metric type's ``# TYPE`` line stands for (a counter's line already ends in _total).
SERIES = {"counter": ("",), "gauge": ("",), "untyped": ("",), "unknown": ("",), "info": ("",), "stateset": ("",),
          "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}


def exposition_names(text: str) -> set[str]:
    """Every series name the exposition holds, or would once its labelled metrics are first set
    (those show only their ``# TYPE`` line until then)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + suffix for suffix in SERIES[kind]}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group())
    return names


@pytest.fixture(scope="module")
def exported() -> set[str]:
    registry.load()
    for module in PROCESS_METRICS:
        importlib.import_module(module)
    queues = CollectorRegistry()
    watch_queues(lambda: {"custody": (0, 0, 0)}, registry=queues)
    expositions = [generate_latest(REGISTRY), HttpMetrics().exposition(),
                   generate_latest(ScannerMetrics("ethereum").registry), generate_latest(queues)]
    return set().union(*(exposition_names(text.decode()) for text in expositions))


def grafana_to_promql(expr: str) -> str:
    return re.sub(r"\$__\w+", "5m", expr)  # $__rate_interval and the like, which Grafana fills in


def metric_names(expr: str) -> set[str]:
    """The metric of every selector in ``expr`` (a ``[5m]`` range's included)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            by_matcher = [m.value for m in node.matchers.matchers if m.name == "__name__"] if node.matchers else []
            assert node.name or by_matcher, f"a selector without a metric name cannot be checked: {node}"
            names.add(node.name or by_matcher[0])

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def unexported(expr: str, exported: set[str]) -> list[str]:
    return sorted(metric_names(expr) - exported - PROMETHEUS_OWN)


def test_the_rules_file_is_groups_of_alerts():
    assert [group["name"] for group in RULES["groups"]], "no rule groups"
    names = [rule["alert"] for rule in ALERTS]
    assert len(names) == len(set(names)) >= 10
    for rule in ALERTS:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_every_alert_names_only_exported_metrics(rule, exported):
    assert unexported(rule["expr"], exported) == []


@pytest.mark.parametrize("name", ["virtuoz_scanner_blocks", "virtuoz_job_latency_seconds",
                                  "virtuoz_queue_dead_letters_total", "virtuoz_no_such_metric"])
def test_a_metric_nobody_exports_is_reported(name, exported):
    # A counter without its _total, a histogram without _bucket: names Prometheus never sees.
    assert unexported(f"sum(rate({name}[5m])) > 0 or absent(up)", exported) == [name]


def test_an_exported_metric_as_prometheus_spells_it_passes(exported):
    expr = "histogram_quantile(0.99, rate(virtuoz_job_latency_seconds_bucket[5m])) + virtuoz_scanner_blocks_total"
    assert unexported(expr, exported) == []


def test_an_expression_that_is_not_promql_is_refused():
    with pytest.raises(ValueError):
        metric_names("sum(rate(virtuoz_queue_depth[5m])")


def test_prometheus_loads_the_rules_and_scrapes_every_job_they_name():
    assert SCRAPE["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"] for job in SCRAPE["scrape_configs"]}
    named = set(re.findall(r'job="([^"]+)"', " ".join(rule["expr"] for rule in ALERTS)))
    assert named and named <= jobs


def test_every_long_running_process_in_compose_is_scraped():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    processes = {name for name, service in compose["services"].items()
                 if "virtuoz" in str(service.get("image", "")) and service.get("restart") != "no"}
    assert processes - {job["job_name"] for job in SCRAPE["scrape_configs"]} == set()


def test_every_kubernetes_pod_but_the_migration_is_scraped_where_it_serves():
    settings: dict[str, str] = {}
    workloads = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for resource in yaml.safe_load_all(path.read_text()):
            if resource["kind"] == "ConfigMap":
                settings.update(resource.get("data", {}))
            elif resource["kind"] in ("Deployment", "StatefulSet"):
                workloads.append(resource)
    assert workloads
    for workload in workloads:
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        name = workload["metadata"]["name"]
        assert annotations.get("prometheus.io/scrape") == "true", name
        [container] = workload["spec"]["template"]["spec"]["containers"]
        ports = {port["containerPort"] for port in container.get("ports", [])}
        assert int(annotations["prometheus.io/port"]) in ports, name
        if container["args"] != ["api"]:  # the API serves /metrics on its HTTP port
            environment = dict(settings) if container.get("envFrom") else {}
            environment.update({variable["name"]: variable["value"] for variable in container.get("env", [])})
            assert environment.get("VIRTUOZ_METRICS_PORT") == annotations["prometheus.io/port"], name
            assert environment.get("VIRTUOZ_METRICS_HOST") == "0.0.0.0", name


def test_the_dashboard_panels_each_query_something_with_unique_ids():
    assert DASHBOARD["schemaVersion"] >= 39
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        assert panel.get("targets"), panel["title"]
        assert all(target["expr"] for target in panel["targets"]), panel["title"]


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target["expr"][:60])
def test_every_dashboard_query_names_only_exported_metrics(target, exported):
    assert unexported(grafana_to_promql(target["expr"]), exported) == []
