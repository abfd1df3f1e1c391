"""The Prometheus alerting rules shipped in deploy/prometheus/: valid, unit-tested, and
written against metrics that /metrics really serves.

``promtool`` comes with Debian's ``prometheus`` package. Without it these tests are skipped
with a message, except in CI (``CI=true`` or ``COLLABADMIN_REQUIRE_PROMTOOL=1``), where
that is a failure: rules nobody checked are worse than none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from failover.choices import Health, PeerKind, PeerPriority
from tests.factories import PeerFactory, ServerFactory
from tests.pairs import set_health
from tests.processes import ROOT

RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "collabadmin-rules.yml"
RULE_TESTS = RULES_DIR / "collabadmin-rules.test.yml"
# What the rules must cover (issue 19, point 4).
EXPECTED_ALERTS = {
    "CollabadminLinkDown",
    "CollabadminPairWithoutRedundancy",
    "CollabadminFailoverRateHigh",
    "CollabadminHealthMonitorNotRunning",
    "CollabadminHealthMonitorRunningLate",
    "CollabadminWorkerQueueNotMoving",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    message = "promtool not found (apt-get install -y prometheus)"
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("COLLABADMIN_REQUIRE_PROMTOOL") == "1":
        pytest.fail(f"{message}, and CI requires it")
    pytest.skip(message)


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], cwd=RULES_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_finds_the_rules_valid():
    result = run_promtool("check", "rules", RULES)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_every_rule_passes_its_promtool_unit_tests():
    result = run_promtool("test", "rules", RULE_TESTS.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_rules_cover_what_operators_need_and_each_is_exercised_by_the_unit_tests():
    names = {rule["alert"] for rule in rules()}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    exercised = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    firing = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}

    assert names == EXPECTED_ALERTS
    assert exercised == names
    assert firing == names, "every rule has a case where it fires"
    assert all(rule["labels"]["severity"] in {"warning", "critical"} for rule in rules())


@pytest.mark.django_db
def test_every_metric_the_rules_read_is_served_by_metrics():
    """A rule on a misspelt or removed metric never fires: check them against a real scrape."""
    server = ServerFactory(name="routing-a")
    for priority in PeerPriority.values:
        peer = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=f"mb-{priority}")
        set_health(peer, Health.UP)
    response = Client().get("/metrics")
    assert response.status_code == 200
    served = {
        sample.name for family in text_string_to_metric_families(response.content.decode()) for sample in family.samples
    }
    wanted = {name for rule in rules() for name in re.findall(r"\bcollabadmin_[a-z_]+", rule["expr"])}

    assert wanted
    assert wanted <= served, f"not served by /metrics: {sorted(wanted - served)}"
