"""``certkeeper monitoring rules|dashboard``: Prometheus alerting rules and a Grafana dashboard
for the daemon's metrics (see the README section "Monitoring")."""

from __future__ import annotations

import json
import sys

import click


@click.group()
def monitoring() -> None:
    """Prometheus alerting rules and a Grafana dashboard for the daemon's metrics."""


@monitoring.command()
@click.option("--expiring-days", type=float, default=14, show_default=True,
              help="Warn when a certificate expires within this many days.")
@click.option("--critical-days", type=float, default=3, show_default=True,
              help="Page when a certificate expires within this many days.")
@click.option("--reconcile-minutes", type=float, default=None,
              help="The daemon's reconcile interval (default: [daemon] reconcile_minutes of the config).")
@click.option("--selector", default="", metavar="MATCHERS",
              help="Label matchers added to every selector, e.g. 'job=\"certkeeper\"'.")
@click.pass_context
def rules(ctx: click.Context, expiring_days: float, critical_days: float, reconcile_minutes: float | None,
          selector: str) -> None:
    """Print Prometheus alerting rules (YAML) for `rule_files`; check them with `promtool check rules`."""
    from certkeeper.cli.common import load_config
    from certkeeper.monitoring import RuleSettings, rules_yaml

    if reconcile_minutes is None:
        reconcile_minutes = load_config(ctx).settings.daemon.reconcile_minutes
    settings = RuleSettings(expiring_days=expiring_days, critical_days=critical_days,
                            reconcile_minutes=reconcile_minutes, selector=selector.strip())
    sys.stdout.write(rules_yaml(settings))


@monitoring.command()
@click.option("--title", default="certkeeper", show_default=True, help="The dashboard's title.")
def dashboard(title: str) -> None:
    """Print a Grafana dashboard (JSON) to import; it asks for the Prometheus data source."""
    from certkeeper.monitoring import dashboard as build

    sys.stdout.write(json.dumps(build(title), indent=2) + "\n")
