"""`certkeeper renew` and `certkeeper revoke`."""

from __future__ import annotations

import sys

import click

from certkeeper.cli.common import complete_certificate_ids, console, fmt_time, open_service, print_json


@click.command()
@click.argument("cert_ids", nargs=-1, shell_complete=complete_certificate_ids)
@click.option("--all", "all_", is_flag=True, help="Every managed certificate (the default when no ID is given).")
@click.option("--force", is_flag=True, help="Renew now even if not due; also retries after a permanent refusal.")
@click.option("--dry-run", is_flag=True, help="Print what would happen and why; change nothing.")
@click.option("--parallel", default=4, show_default=True, help="Certificates issued at once.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def renew(ctx: click.Context, cert_ids: tuple[str, ...], all_: bool, force: bool, dry_run: bool, parallel: int,
          as_json: bool) -> None:
    """Renew due certificates now (the same decisions the daemon makes), then deploy and verify them.

    Exit 0 when nothing failed (including when nothing was due), 1 when any renewal or deployment failed.
    """
    if all_ and cert_ids:
        raise click.UsageError("give certificate ids or --all, not both")
    service = open_service(ctx, sync=not dry_run)
    if force and cert_ids and not dry_run:
        for cert_id in cert_ids:
            service.inventory.clear_rejection(cert_id)
    out = console(stderr=as_json)
    report = service.reconcile(
        cert_ids=list(cert_ids) or None, force=force, dry_run=dry_run, parallel=parallel,
        progress=lambda step: out.print(f"  [dim]{step}[/dim]"),
    )
    if as_json:
        print_json({
            "dry_run": dry_run,
            "decisions": [d.__dict__ for d in report.decisions],
            "issued": [o.__dict__ for o in report.issued],
            "failed": report.failed, "deployed": report.deployed, "deploy_failed": report.deploy_failed,
        })
    else:
        out = console()
        for decision in report.decisions:
            if decision.action == "wait":
                out.print(f"{decision.certificate_id}: not due ({decision.message})")
            elif decision.action == "blocked":
                out.print(f"{decision.certificate_id}: [yellow]{decision.reason}[/yellow]: {decision.message}")
            elif dry_run:
                out.print(f"{decision.certificate_id}: [cyan]would issue[/cyan] ({decision.reason}): "
                          f"{decision.message}")
        for outcome in report.issued:
            out.print(f"{outcome.certificate_id}: [green]issued[/green] revision {outcome.revision}, "
                      f"expires {fmt_time(outcome.not_after)}, renews after {fmt_time(outcome.renewal_time)}")
        for cert_id, error in report.failed.items():
            out.print(f"{cert_id}: [red]failed[/red]: {error}")
        for target in report.deployed:
            out.print(f"{target}: [green]deployed and verified[/green]")
        for target, error in report.deploy_failed.items():
            out.print(f"{target}: [red]deploy failed[/red]: {error}")
    if not dry_run and not report.ok:
        sys.exit(1)


REASONS = ["unspecified", "keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged"]


@click.command()
@click.argument("cert_id", shell_complete=complete_certificate_ids)
@click.option("--reason", type=click.Choice(REASONS), default="unspecified", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def revoke(ctx: click.Context, cert_id: str, reason: str, yes: bool) -> None:
    """Revoke CERT_ID's current certificate at its CA (ACME). It stays stored; renew to replace it."""
    service = open_service(ctx)
    if not yes:
        click.confirm(f"Revoke the current certificate of {cert_id}? Clients will stop trusting it.", abort=True)
    serial = service.inventory.revoke(cert_id, reason)
    console().print(f"Revoked {cert_id} (serial {serial}, reason {reason}). Run `certkeeper renew {cert_id} --force`.")
