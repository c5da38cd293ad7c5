"""``monitoring/``: the alerting rules, their promtool unit tests and the Grafana dashboard
name only metrics watcher exports, and every alert is tested firing and quiet."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from watcher.metrics import Metrics

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
RULES = MONITORING / "watcher.rules.yml"
RULE_TESTS = MONITORING / "watcher.rules.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
NAME = re.compile(r"\bwatcher_[a-z0-9_]+")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported() -> dict[str, set[str]]:
    """Each metric family watcher exports, with the series names it is scraped as."""
    families = Metrics().registry.collect()
    return {f.name: {f.name + suffix for suffix in SUFFIXES[f.type]} for f in families}


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text("utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text("utf-8"))
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return queries + [v["definition"] for v in board["templating"]["list"] if "definition" in v]


@pytest.mark.parametrize("path", [RULES, RULE_TESTS, DASHBOARD], ids=lambda p: p.name)
def test_only_metrics_watcher_exports_are_named(path: Path) -> None:
    scraped = set().union(*exported().values())
    used = set(NAME.findall(path.read_text("utf-8")))
    assert used and used <= scraped, used - scraped


def test_the_dashboard_shows_every_metric_watcher_exports() -> None:
    used = set(NAME.findall("\n".join(dashboard_queries())))
    assert {family for family, names in exported().items() if not names & used} == set()


def test_each_alert_says_how_long_how_bad_and_what_to_do() -> None:
    rules = alerts()
    assert rules
    for rule in rules:
        assert rule["for"] and rule["labels"]["severity"] in ("critical", "warning"), rule
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_each_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text("utf-8"))["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alerts():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} never quiet"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
@pytest.mark.parametrize(("command", "path"), [("check", RULES), ("test", RULE_TESTS)])
def test_promtool_checks_the_rules_and_runs_their_tests(command: str, path: Path) -> None:
    done = subprocess.run(
        ["promtool", command, "rules", path.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
