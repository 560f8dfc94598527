"""`certkeeper status` (`certkeeper deploy` is in deploy.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from certkeeper.cli.common import console, days_left, fmt_time, load_config, open_service, print_json

if TYPE_CHECKING:
    from certkeeper.service import Service


@click.command()
@click.option("--nodes", is_flag=True, help="A certificate x node matrix: what each CAS node serves.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--html", "html_file", metavar="FILE",
              help="Write the status page (the daemon's /) as one self-contained HTML file; - for stdout.")
@click.pass_context
def status(ctx: click.Context, nodes: bool, as_json: bool, html_file: str | None) -> None:
    """Every certificate's health and reason, next renewal, last failure, what is served, pending alerts.

    First, which config file and store are in use. A store that does not exist yet is reported as
    such and not created (a shell that resolves another store than the service sees it here)."""
    from certkeeper.reports import installation, node_matrix, status_report

    if html_file is not None and (nodes or as_json):
        raise click.UsageError("--html writes the whole page (nodes included); it cannot be combined with "
                               "--nodes or --json")
    where = installation(load_config(ctx))
    if where["store"]["exists"] is False:
        _no_store(where, nodes=nodes, as_json=as_json)
        return
    service = open_service(ctx, read_only=True)
    if html_file is not None:
        _write_html(service, html_file)
        return
    if not as_json:
        _print_where(where)
    if nodes:
        matrix = node_matrix(service.store, service.clock.now(), service.config.settings)
        if as_json:
            print_json(where | matrix)
            return
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("CERTIFICATE", "NODE", "BINDING", "REVISION", "SERVED", "VERIFIED", "DRIFT", "HEARTBEAT"):
            table.add_column(column)
        for row in matrix["rows"]:
            drift = "[red]yes[/red]" if row["drift"] else "no"
            heartbeat = fmt_time(row["heartbeat_at"]) + ("" if row["alive"] else " [red](down)[/red]")
            table.add_row(
                row["certificate"], row["node"] or "-", row["binding"], str(row["revision"] or "-"),
                (row["served_fingerprint"] or "-")[:16], fmt_time(row["verified_at"]), drift, heartbeat,
            )
        out = console()
        out.print(table)
        issuer = next((node["name"] for node in matrix["nodes"] if node["issuer"]), None)
        down = [node["name"] for node in matrix["nodes"] if not node["alive"]]
        out.print(f"Issuer: {issuer or 'none (the lease is free)'}"
                  + (f"; no heartbeat from: {', '.join(down)}" if down else ""))
        return
    report = status_report(service.store, service.clock.now())
    if as_json:
        print_json(where | report)
        return
    out = console()
    now = service.clock.now()
    colours = {"Ready": "green", "Renewing": "cyan", "Expiring": "yellow", "Failing": "red", "Expired": "red"}
    for cert in report["certificates"]:
        colour = colours.get(cert["health"], "white")
        left = days_left(cert.get("not_after"), now)
        out.print(f"[bold]{cert['id']}[/bold] [{colour}]{cert['health']}[/{colour}]: {cert['reason']}")
        out.print(f"  expires {fmt_time(cert.get('not_after'))} ({'-' if left is None else f'{left:.0f}'} days), "
                  f"renews after {fmt_time(cert.get('renewal_time'))}")
        if cert.get("last_failure"):
            after = ("no automatic retry: `certkeeper renew ID --force` after fixing the cause" if cert["rejected"]
                     else f"next attempt {fmt_time(cert.get('next_attempt_at'))}")
            out.print(f"  last failure: {cert['last_failure']} ({after})")
        if not cert.get("in_config", True):
            out.print("  not in the config any more: kept in the store, no longer deployed")
        for dep in cert["deployments"]:
            match = "serves current" if dep["serves_current"] else "[red]serves something else[/red]"
            out.print(f"  {dep['binding']}{'@' + dep['node'] if dep['node'] else ''}: {dep['state']}, {match} "
                      f"({(dep['served_fingerprint'] or '-')[:16]}, verified {fmt_time(dep['verified_at'])})")
    if not report["certificates"]:
        out.print("No certificates under management.")
    out.print(f"Alerts waiting: {report['pending_alerts']}; given up: {report['failed_alerts']}")


def _write_html(service: Service, target: str) -> None:
    """The status page as one file for a change ticket or a mail: the same renderer as the
    daemon's page, with every certificate's details in it and nothing loaded from anywhere."""
    import sys
    from pathlib import Path

    from certkeeper.reports import describe_certificate, overview_report
    from certkeeper.web.render import status_page

    now = service.clock.now()
    report = overview_report(service.store, now, service.config.settings)
    details = [describe_certificate(service.store, now, cert["id"]) for cert in report["status"]["certificates"]]
    html = status_page(report, node=service.node or None, static=True, details=details)
    if target == "-":
        sys.stdout.write(html)
        return
    path = Path(target)
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        from certkeeper.errors import CertkeeperError

        raise CertkeeperError(f"cannot write {path}: {exc.strerror}") from None
    console(stderr=True).print(f"Wrote the status page to {path} ({len(report['status']['certificates'])} "
                               "certificates)")


def _print_where(where: dict[str, Any]) -> None:
    config, store = where["config"], where["store"]
    out = console()
    found = "" if config["exists"] else " (not found: defaults in use)"
    # plain text: paths and "[...]" must not be read as rich markup
    out.print(f"Config: {config['path'] or '-'}{found} [{config['from'] or '-'}]", markup=False, highlight=False)
    out.print(f"Store: {store['url']} [data folder {store['data_dir']}: {store['data_dir_from'] or '-'}]",
              markup=False, highlight=False)
    out.print(f"Daemon: {_daemon_line(where['daemon'])}", markup=False, highlight=False)


def _daemon_line(daemon: dict[str, Any]) -> str:
    """Where the daemon answers and who may read its page, in one line."""
    if daemon["url"] is None:
        return "no HTTP server ([daemon] metrics_address is empty)"
    what = "status page, /metrics, /healthz" if daemon["status_page"] else "/metrics, /healthz (no status page)"
    said = []
    if daemon["tls_certificate"]:
        said.append(f"certificate {daemon['tls_certificate']}")
    if "client-certificate" in daemon["guards"]:
        names = daemon["client_names"]
        said.append(f"client certificates from {daemon['client_ca_file']}"
                    + (f" naming {', '.join(names)}" if names else ""))
    if "token" in daemon["guards"]:
        said.append("status token")
    if "loopback" in daemon["guards"]:
        said.append("this machine only")
    return f"{daemon['url']} ({what}{'; ' + '; '.join(said) if said else ''})"


def _no_store(where: dict[str, Any], *, nodes: bool, as_json: bool) -> None:
    """The store does not exist: say where it was looked for, create nothing."""
    if as_json:
        empty: dict[str, Any] = {"nodes": [], "rows": []} if nodes else {
            "certificates": [], "pending_alerts": 0, "failed_alerts": 0}
        print_json(where | empty)
        return
    _print_where(where)
    console().print(f"No store at {where['store']['path']} yet: `certkeeper init` or `certkeeper issue` creates it. "
                    "If the service uses another one, give this shell the same --config or $CERTKEEPER_CONFIG "
                    "and $CERTKEEPER_DATA_DIR.")
