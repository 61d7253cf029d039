"""The alert rules and the Grafana dashboard in monitoring/: the rules pass promtool
(`check rules`, and their unit tests with `test rules`), are well-formed by the rule
schema and documented one by one; the dashboard is a well-formed Grafana model.
(That every series they name is exported: tests/integration/test_metrics.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
RULES = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        # .ci/run installs it (Debian `prometheus`); the schema test below still runs.
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_its_promtool_unit_test() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        cwd=MONITORING,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
    firing = {
        case["alertname"]
        for test in tested["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing == set(alert_names())


def alert_names() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    return [rule["alert"] for group in document["groups"] for rule in group["rules"]]


def test_rules_follow_the_rule_schema() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= _RULE_KEYS, rule
            assert re.fullmatch(r"Identity[A-Z][A-Za-z0-9]+", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert _DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert all(isinstance(v, str) for v in rule["labels"].values())
            assert set(rule["annotations"]) == {"summary", "description"}
    names = alert_names()
    assert len(names) == len(set(names))


def test_each_alert_is_documented() -> None:
    readme = (MONITORING / "README.md").read_text()
    documented = set(re.findall(r"^### (Identity\w+)", readme, re.MULTILINE))
    assert documented == set(alert_names())


def test_the_issue_asks_for_these_alerts() -> None:
    assert {
        "IdentityLoginFailureRatioHigh",
        "IdentityLockoutSpike",
        "IdentityRefreshReuseSpike",
        "IdentityLatencyP99High",
        "IdentityDbPoolSaturated",
        "IdentityRbacLeaseLost",
        "IdentityPartitionsRunningOut",
        "IdentitySigningKeyOld",
    } <= set(alert_names())


def test_the_dashboard_is_a_grafana_model() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["title"] and panel["gridPos"]["w"] > 0
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip()
            # Brackets balance: a truncated expression would not load.
            for left, right in ("()", "{}", "[]"):
                assert target["expr"].count(left) == target["expr"].count(right), target["expr"]
