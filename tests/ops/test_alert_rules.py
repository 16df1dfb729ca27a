"""The shipped alert rules, Prometheus config and Grafana dashboard are valid, tested, and
read only metrics the gateway really exports (issue 19).

promtool is Debian's (prometheus package); without it these tests fail with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from backend.audit.verify_status import write_status

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
DASHBOARD = ROOT / "infra" / "grafana" / "estafette.json"
METRIC = re.compile(r"\b(estafette_[a-z0-9_]+)")
# A histogram is queried through its series, not its family name.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `apt-get install prometheus` (Debian) provides it")
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def _alert_names() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def test_the_alert_rules_are_valid() -> None:
    answer = _promtool("check", "rules", "alerts.yml")
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    answer = _promtool("test", "rules", "alerts_test.yml")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "SUCCESS" in answer.stdout


def test_the_example_prometheus_config_is_valid() -> None:
    answer = _promtool("check", "config", "prometheus.yml")
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_every_alert_has_a_unit_test_in_which_it_fires() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert _alert_names() - fired == set()
    assert _alert_names() - quiet == set()  # and stays quiet when things are fine


def test_the_issue_s_alerts_are_all_there() -> None:
    assert {
        "EstafetteMailboxInError",
        "EstafetteNoSyncLeaseHolder",
        "EstafetteOutboxStale",
        "EstafettePushFailureRatio",
        "EstafetteCertificateExpiringSoon",
        "EstafetteAuditChainBroken",
        "EstafetteApi5xx",
    } <= _alert_names()


@pytest.fixture
def exported(client, services) -> set[str]:
    """Every metric name the gateway exports (the api's registry holds the sync and push
    metrics too), with the audit verdict present as after a periodic verify."""
    write_status(services.settings.var_dir, ok=True, records=0)
    text = client.get("/metrics").get_data(as_text=True)
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
            if kind == "counter":
                names.add(name + "_total" if not name.endswith("_total") else name)
    return names


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_alerts_read_only_exported_metrics(exported: set[str]) -> None:
    used = set(METRIC.findall((PROMETHEUS / "alerts.yml").read_text()))
    assert used, "the rules name no estafette metric"
    assert used - exported == set()


def test_the_dashboard_is_grafana_json_with_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "estafette"
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["targets"], panel
        assert all(target["expr"] for target in panel["targets"]), panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_dashboard_panels_use_only_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    assert used - exported == set()
