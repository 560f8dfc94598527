"""Prometheus alerting rules and a Grafana dashboard for the daemon's metrics.

``certkeeper monitoring rules`` and ``certkeeper monitoring dashboard`` print these. Both are built
from the metric names in :mod:`certkeeper.metrics`, so they cannot name a series the daemon does
not export. Every daemon of a CAS array exports the same store-wide view, so rules about
certificates aggregate away the scrape's ``instance`` (``min by (name, ...)``) and fire once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from certkeeper.metrics import (
    ALERTS_FAILED,
    ALERTS_PENDING,
    DEPLOYMENT_VERIFIED,
    EXPIRATION,
    FAILURES,
    LAST_RECONCILE,
    READY,
    RECONCILE_ERRORS,
    RENEWAL,
)

CERT = "name, issuer_name, issuer_kind"


@dataclass(frozen=True)
class RuleSettings:
    """Thresholds of the alerting rules."""

    #: warn when a certificate expires within this many days (renewal should have happened long before)
    expiring_days: float = 14
    #: page when it expires within this many days
    critical_days: float = 3
    #: the daemon's reconcile interval; "not reconciling" fires after 3 intervals and 10 minutes
    reconcile_minutes: float = 5
    #: extra label matchers for every selector, e.g. 'job="certkeeper"'
    selector: str = ""


def _series(name: str, settings: RuleSettings, *matchers: str) -> str:
    parts = [*matchers, *([settings.selector] if settings.selector else [])]
    return f"{name}{{{','.join(parts)}}}" if parts else name


def _days(days: float) -> str:
    return f"{days:g} * 86400"


def rules(settings: RuleSettings | None = None) -> dict[str, Any]:
    """The rule file as data: ``{"groups": [...]}``."""
    s = settings or RuleSettings()
    stale = max(3 * s.reconcile_minutes * 60, 600) + 600

    def rule(alert: str, expr: str, duration: str, severity: str, summary: str, description: str) -> dict[str, Any]:
        return {"alert": alert, "expr": expr, "for": duration, "labels": {"severity": severity},
                "annotations": {"summary": summary, "description": description}}

    expiry = f"min by ({CERT}) ({_series(EXPIRATION, s)}) - time()"
    not_ready = _series(READY, s, 'condition="False"')
    group = [
        rule("CertkeeperCertificateExpiringSoon", f"{expiry} < {_days(s.expiring_days)}", "15m", "warning",
             "Certificate {{ $labels.name }} expires in less than " + f"{s.expiring_days:g} days",
             "{{ $labels.name }} (issuer {{ $labels.issuer_name }}) expires in {{ $value | humanizeDuration }} "
             "and has not been renewed. Run `certkeeper status` and `certkeeper show {{ $labels.name }}`."),
        rule("CertkeeperCertificateExpiringVerySoon", f"{expiry} < {_days(s.critical_days)}", "5m", "critical",
             "Certificate {{ $labels.name }} expires in less than " + f"{s.critical_days:g} days",
             "{{ $labels.name }} expires in {{ $value | humanizeDuration }}. Outlook clients will refuse the "
             "gateway once it has expired."),
        rule("CertkeeperCertificateNotReady",
             f"max by ({CERT}) ({not_ready}) == 1", "30m", "warning",
             "Certificate {{ $labels.name }} is not ready",
             "certkeeper reports {{ $labels.name }} as Missing, Failing, Expiring or Expired; "
             "`certkeeper status` says why."),
        rule("CertkeeperRenewalFailing", f"min by ({CERT}) ({_series(FAILURES, s)}) > 0", "1h", "warning",
             "Renewal of {{ $labels.name }} is failing",
             "{{ $value }} consecutive issuance attempts of {{ $labels.name }} failed "
             "(issuer {{ $labels.issuer_name }}, {{ $labels.issuer_kind }})."),
        rule("CertkeeperRenewalOverdue",
             f"time() - max by ({CERT}) ({_series(RENEWAL, s)}) > 86400", "1h", "warning",
             "Renewal of {{ $labels.name }} is more than a day overdue",
             "{{ $labels.name }} should have been renewed {{ $value | humanizeDuration }} ago."),
        rule("CertkeeperNodeServesAnotherCertificate",
             f"min by (name, node) ({_series(DEPLOYMENT_VERIFIED, s)}) == 0", "30m", "warning",
             "Node {{ $labels.node }} does not serve the current {{ $labels.name }} certificate",
             "At the last check an endpoint of {{ $labels.name }} on node {{ $labels.node }} served another "
             "certificate (a stopped rollout, a failed deployment or a change by hand). "
             "`certkeeper status --nodes` shows what it serves."),
        rule("CertkeeperDaemonNotReconciling",
             f"time() - {_series(LAST_RECONCILE, s)} > {stale:g}", "5m", "critical",
             "certkeeper daemon on {{ $labels.instance }} is not reconciling",
             "The last reconcile pass finished {{ $value | humanizeDuration }} ago "
             + f"(every {s.reconcile_minutes:g} minutes expected)."),
        rule("CertkeeperReconcilePassFailing", f"{_series(RECONCILE_ERRORS, s)} < 0", "15m", "critical",
             "certkeeper's reconcile pass fails on {{ $labels.instance }}",
             "The whole pass failed (the store unreachable?); the daemon's log says why."),
        rule("CertkeeperDaemonAbsent", f"absent({_series(LAST_RECONCILE, s)})", "15m", "critical",
             "No certkeeper daemon is scraped",
             "Prometheus has no certkeeper metrics: the daemon is down or not scraped."),
        rule("CertkeeperAlertsStuck", f"min({_series(ALERTS_PENDING, s)}) > 0", "1h", "warning",
             "certkeeper alerts are stuck in the outbox",
             "{{ $value }} alerts have been waiting for over an hour: a notifier is failing "
             "(`certkeeper notify test`)."),
        rule("CertkeeperAlertsGivenUp", f"max(delta({_series(ALERTS_FAILED, s)}[1h])) > 0", "0m", "warning",
             "certkeeper gave up delivering alerts",
             "Alerts were given up after a permanent error or too many attempts; the daemon's log names the "
             "notifier."),
    ]
    return {"groups": [{"name": "certkeeper", "rules": group}]}


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for the plain data of :func:`rules` (strings as JSON strings, which YAML
    reads the same way); no YAML library needed."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                first, *rest = to_yaml(item, indent + 2).split("\n")
                lines.append(f"{pad}- {first.lstrip()}")
                lines.extend(rest)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))


def rules_yaml(settings: RuleSettings | None = None) -> str:
    header = "# Prometheus alerting rules for certkeeper (certkeeper monitoring rules)\n"
    return header + to_yaml(rules(settings)) + "\n"


# -- Grafana --------------------------------------------------------------------------------------


def dashboard(title: str = "certkeeper") -> dict[str, Any]:
    """A Grafana dashboard (JSON model, schema 39) over the daemon's metrics; import it in
    Grafana (Dashboards > New > Import) and pick the Prometheus data source."""
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels: list[dict[str, Any]] = []

    def panel(kind: str, name: str, targets: list[tuple[str, str]], x: int, y: int, w: int, h: int,
              **extra: Any) -> None:
        item: dict[str, Any] = {
            "id": len(panels) + 1, "type": kind, "title": name, "datasource": source,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "targets": [{"refId": chr(ord("A") + index), "datasource": source, "expr": expr, "legendFormat": legend,
                         **({"instant": True, "format": "table"} if kind == "table" else {})}
                        for index, (expr, legend) in enumerate(targets)],
        }
        item.update(extra)
        panels.append(item)

    by_cert = f"by ({CERT})"
    panel("stat", "Certificates not ready",
          [(f'sum(max by (name) ({READY}{{condition!="True"}})) or vector(0)', "")], 0, 0, 6, 4)
    panel("stat", "Expiring within 14 days",
          [(f"count(min by (name) ({EXPIRATION}) - time() < 14 * 86400) or vector(0)", "")], 6, 0, 6, 4)
    panel("stat", "Nodes serving another certificate",
          [(f"count(min by (name, node) ({DEPLOYMENT_VERIFIED}) == 0) or vector(0)", "")], 12, 0, 6, 4)
    panel("stat", "Alerts waiting / given up",
          [(f"max({ALERTS_PENDING})", "waiting"), (f"max({ALERTS_FAILED})", "given up")], 18, 0, 6, 4)
    panel("table", "Certificates",
          [(f"(min {by_cert} ({EXPIRATION}) - time()) / 86400", "days left"),
           (f"(min {by_cert} ({RENEWAL}) - time()) / 86400", "renewal in days"),
           (f"max {by_cert} ({FAILURES})", "failures"),
           (f'max {by_cert} ({READY}{{condition="True"}})', "ready")],
          0, 4, 24, 8, transformations=[{"id": "merge", "options": {}}])
    panel("timeseries", "Days until expiry", [(f"min {by_cert} ({EXPIRATION} - time()) / 86400", "{{name}}")],
          0, 12, 12, 8, fieldConfig={"defaults": {"unit": "d"}, "overrides": []})
    panel("table", "Served by each node (1 = the current certificate)",
          [(f"min by (name, node) ({DEPLOYMENT_VERIFIED})", "")], 12, 12, 12, 8)
    panel("timeseries", "Seconds since the last reconcile pass",
          [(f"time() - {LAST_RECONCILE}", "{{instance}}")], 0, 20, 12, 8,
          fieldConfig={"defaults": {"unit": "s"}, "overrides": []})
    panel("timeseries", "Consecutive issuance failures", [(f"max by (name) ({FAILURES})", "{{name}}")],
          12, 20, 12, 8)
    return {
        "title": title, "uid": "certkeeper", "schemaVersion": 39, "version": 1, "editable": True,
        "tags": ["certkeeper", "certificates"], "time": {"from": "now-7d", "to": "now"}, "refresh": "1m",
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "panels": panels,
    }
