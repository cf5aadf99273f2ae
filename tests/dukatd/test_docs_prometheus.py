"""docs/prometheus/: the scrape config and the alerts name only what a real dukatd exports.

A rule on a metric that does not exist never fires, silently: each metric named in an
alert's expression must be one the daemon's /metrics describes, each label value one it
can take."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from dukat.errors import TaskInterruptedError
from dukatd.grpc_metrics import GO_CODE_NAMES
from tests.helpers import wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "prometheus"
# Made by Prometheus itself for every target, not by dukatd.
PROMETHEUS_OWN = {"up"}
# Each label value an alert compares with, and where dukatd's set of them is defined.
LABEL_VALUES = {
    "workers": {"none", "busy"},
    "reason": set(TaskInterruptedError.CAUSES),
    "state": {"succeeded", "failed", "cancelled", "skipped"},
    "grpc_code": set(GO_CODE_NAMES.values()),
}


def alerts() -> list[dict]:
    groups = yaml.safe_load((DOCS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def names_in(expression: str) -> set[str]:
    """Metric names an expression reads: identifiers followed by `{`, `[`, a space or the
    end, that are not PromQL's own words."""
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?=\s*[{\[)\s]|$)", expression))
    promql = {"sum", "rate", "increase", "and", "on", "or", "by", "without", "unless"}
    return {word for word in words if word not in promql and ("_" in word or word == "up")}


def exported(port: str) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_the_scrape_config_reads_the_alerts_and_the_daemons_default_address() -> None:
    config = yaml.safe_load((DOCS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "dukatd"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9464"]  # --metrics-listen's default


async def test_every_alert_reads_metrics_and_label_values_a_real_dukatd_has(daemons, short_tmp):
    daemon = await daemons(
        "--metrics-listen", "127.0.0.1:0", state_dir=short_tmp / "state"
    ).serving()
    await wait_for(lambda: "metrics on" in daemon.log(), within=10)
    port = re.findall(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", daemon.log())[0]
    known = exported(port)
    rules = alerts()
    assert rules and all(rule["annotations"]["summary"] for rule in rules)
    for rule in rules:
        named = names_in(rule["expr"])
        assert named, rule["alert"]
        assert named - PROMETHEUS_OWN <= known, (rule["alert"], named - PROMETHEUS_OWN - known)
        for label, value in re.findall(r'(\w+)=~?"([^"]+)"', rule["expr"]):
            if label in LABEL_VALUES:
                assert set(value.split("|")) <= LABEL_VALUES[label], (rule["alert"], value)
