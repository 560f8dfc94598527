"""`certkeeper monitoring rules|dashboard`: promtool accepts the rules and they fire on the series
the daemon exports; the dashboard is Grafana JSON whose queries name only exported metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from certkeeper.metrics import METRICS

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")


@needs_promtool
def test_rules_pass_promtool_check(ck, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    printed = ck("monitoring", "rules", "--selector", 'job="certkeeper"')
    assert printed.code == 0, printed
    rules = tmp_path / "certkeeper.rules.yml"
    rules.write_text(printed.out)
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout
    for name in re.findall(r"certkeeper_[a-z_]+", printed.out):
        assert name in METRICS, name


@needs_promtool
def test_rules_fire_on_the_daemons_series(ck, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """promtool's rule unit tests: series shaped like the daemon's, evaluated at fixed times."""
    (tmp_path / "certkeeper.toml").write_text("[daemon]\nreconcile_minutes = 5\n")
    printed = ck("monitoring", "rules", "--expiring-days", "14", "--critical-days", "3")
    assert printed.code == 0, printed
    (tmp_path / "rules.yml").write_text(printed.out)
    day = 86400
    cert = 'name="mail",issuer_name="le",issuer_kind="acme"'
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # expires 10 days after t=0: inside 14 days, outside 3
                {"series": f'certkeeper_certificate_expiration_timestamp_seconds{{{cert},instance="cas01"}}',
                 "values": f"{10 * day}+0x120"},
                {"series": f'certkeeper_certificate_expiration_timestamp_seconds{{{cert},instance="cas02"}}',
                 "values": f"{10 * day}+0x120"},
                {"series": 'certkeeper_deployment_verified{name="mail",node="cas02",instance="cas01"}',
                 "values": "0+0x120"},
                {"series": 'certkeeper_deployment_verified{name="mail",node="cas01",instance="cas01"}',
                 "values": "1+0x120"},
                # the last pass finished at t=0 and never again
                {"series": 'certkeeper_last_reconcile_timestamp_seconds{instance="cas01"}', "values": "0+0x120"},
                {"series": 'certkeeper_alerts_pending{instance="cas01"}', "values": "3+0x120"},
                {"series": f'certkeeper_certificate_failures{{{cert},instance="cas01"}}', "values": "0+0x120"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "CertkeeperCertificateExpiringSoon", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "name": "mail", "issuer_name": "le",
                                    "issuer_kind": "acme"},
                     "exp_annotations": {
                         "summary": "Certificate mail expires in less than 14 days",
                         "description": "mail (issuer le) expires in 9d 23h 40m 0s and has not been renewed. "
                                        "Run `certkeeper status` and `certkeeper show mail`."}}]},
                {"eval_time": "20m", "alertname": "CertkeeperCertificateExpiringVerySoon", "exp_alerts": []},
                {"eval_time": "40m", "alertname": "CertkeeperNodeServesAnotherCertificate", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "name": "mail", "node": "cas02"},
                     "exp_annotations": {
                         "summary": "Node cas02 does not serve the current mail certificate",
                         "description": "At the last check an endpoint of mail on node cas02 served another "
                                        "certificate (a stopped rollout, a failed deployment or a change by "
                                        "hand). `certkeeper status --nodes` shows what it serves."}}]},
                # 3 x 5 minutes (at least 10) + 10 minutes stale, then 5 minutes pending
                {"eval_time": "20m", "alertname": "CertkeeperDaemonNotReconciling", "exp_alerts": []},
                {"eval_time": "40m", "alertname": "CertkeeperDaemonNotReconciling", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "instance": "cas01"},
                     "exp_annotations": {
                         "summary": "certkeeper daemon on cas01 is not reconciling",
                         "description": "The last reconcile pass finished 40m 0s ago (every 5 minutes expected)."}}]},
                {"eval_time": "90m", "alertname": "CertkeeperAlertsStuck", "exp_alerts": [
                    {"exp_labels": {"severity": "warning"},
                     "exp_annotations": {
                         "summary": "certkeeper alerts are stuck in the outbox",
                         "description": "3 alerts have been waiting for over an hour: a notifier is failing "
                                        "(`certkeeper notify test`)."}}]},
                {"eval_time": "90m", "alertname": "CertkeeperRenewalFailing", "exp_alerts": []},
            ],
        }],
    }
    (tmp_path / "tests.yml").write_text(json.dumps(tests))
    run = subprocess.run([PROMTOOL, "test", "rules", "tests.yml"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_is_grafana_json_over_exported_metrics(ck) -> None:  # type: ignore[no-untyped-def]
    printed = ck("monitoring", "dashboard", "--title", "Exchange certificates")
    assert printed.code == 0, printed
    board = json.loads(printed.out)
    assert board["title"] == "Exchange certificates" and board["schemaVersion"] >= 36
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    used: set[str] = set()
    for panel in board["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            names = set(re.findall(r"certkeeper_[a-z_]+", target["expr"]))
            assert names and names <= set(METRICS), (panel["title"], names)
            assert target["expr"].count("(") == target["expr"].count(")")
            used |= names
    for needed in ("certkeeper_certificate_expiration_timestamp_seconds", "certkeeper_certificate_ready_status",
                   "certkeeper_deployment_verified", "certkeeper_last_reconcile_timestamp_seconds"):
        assert needed in used
