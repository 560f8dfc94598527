"""``certkeeper deploy ID [--dry-run] [--json]``: deploy, or show the exact PowerShell it would run.

The dry run asks each binding that can (:class:`certkeeper.binders.SupportsDryRun`) for its steps
and runs nothing: no PowerShell, no TLS probe, no database write. Secrets are ``<redacted>``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from certkeeper.cli.common import console, open_service, print_json

if TYPE_CHECKING:
    from certkeeper.binders import PlannedStep


@click.command()
@click.argument("cert_ids", nargs=-1)
@click.option("--force", is_flag=True, help="Deploy again even if already deployed and verified.")
@click.option("--dry-run", is_flag=True, help="Show, per binding and server, the exact PowerShell; run nothing.")
@click.option("--json", "as_json", is_flag=True,
              help='JSON for machines: {"steps": [...]} with --dry-run, else {"results": [...]}.')
@click.pass_context
def deploy(ctx: click.Context, cert_ids: tuple[str, ...], force: bool, dry_run: bool, as_json: bool) -> None:
    """Deploy the current revision to this node's bindings, verify what is served, roll back on failure."""
    service = open_service(ctx)
    ids = cert_ids or tuple(service.deployment.deployable())
    if dry_run:
        steps: list[PlannedStep] = []
        unsupported: list[str] = []
        for cert_id in ids:
            found, missing = service.deployment.plan(cert_id)
            steps += found
            unsupported += [f"{cert_id}/{key}" for key in missing]
        if as_json:
            print_json({"steps": [step.to_dict() for step in steps], "not_planned": unsupported})
            return
        out = console()
        for step in steps:
            out.print(f"[bold]{step.binding}[/bold] {step.server} [cyan]{step.step}[/cyan] ({step.endpoint})")
            out.print(step.script, markup=False, highlight=False)
            out.print()
        for key in unsupported:
            out.print(f"{key}: this binding type has no dry run; a deploy runs it as usual")
        return
    out = console()
    failed = False
    results: list[dict[str, Any]] = []
    for cert_id in ids:
        for result in service.deployment.deploy(cert_id, force=force):
            failed = failed or not (result.ok or result.skipped)
            results.append({"certificate": cert_id, "binding": result.binding, "ok": result.ok,
                            "skipped": result.skipped, "message": result.message,
                            "served_fingerprint": result.served_fingerprint})
            if as_json:
                continue
            if result.skipped:
                out.print(f"{cert_id}/{result.binding}: {result.message}")
            elif result.ok:
                out.print(f"{cert_id}/{result.binding}: [green]deployed[/green] ({result.message})")
            else:
                out.print(f"{cert_id}/{result.binding}: [red]failed[/red]: {result.message}")
    if as_json:
        print_json({"results": results})
    if failed:
        sys.exit(1)
