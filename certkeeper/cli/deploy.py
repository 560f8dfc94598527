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
    from certkeeper.service import Service


def _dry_run_steps(service: Service, cert_id: str) -> tuple[list[PlannedStep], list[str]]:
    """(steps, bindings that cannot say) for the current revision of ``cert_id``.

    The one place the CLI reads the service and store for a dry run (the integrator adapts it when
    the service is split): the bundle, this node's bindings, the revision each binding served
    before (what the deploy would swap out), and the binder built from the binding's options.
    """
    from certkeeper.binders import SupportsDryRun

    bundle = service.bundle(cert_id)
    repo = service.repository
    planned: list[tuple[str, dict[str, Any], int | None]] = []
    with repo.session() as session:
        bindings = list(repo.get_certificate(session, cert_id).bindings or [])
        current = repo.current_revision(session, cert_id)
        for key, binding in service.bindings_for_node(bindings):
            served = service._previous_served(session, cert_id, current.id, key) if current is not None else None
            planned.append((key, binding, served))
    steps: list[PlannedStep] = []
    unsupported: list[str] = []
    for key, binding, served in planned:
        binder = service.binder(cert_id, key, binding)
        if isinstance(binder, SupportsDryRun):
            previous = service.bundle(cert_id, served) if served is not None else None
            steps.extend(binder.plan(bundle, previous))
        else:
            unsupported.append(key)
    return steps, unsupported


@click.command()
@click.argument("cert_ids", nargs=-1)
@click.option("--force", is_flag=True, help="Deploy again even if already deployed and verified.")
@click.option("--dry-run", is_flag=True, help="Show, per binding and server, the exact PowerShell; run nothing.")
@click.option("--json", "as_json", is_flag=True, help='With --dry-run: {"steps": [...]} for machines.')
@click.pass_context
def deploy(ctx: click.Context, cert_ids: tuple[str, ...], force: bool, dry_run: bool, as_json: bool) -> None:
    """Deploy the current revision to this node's bindings, verify what is served, roll back on failure."""
    service = open_service(ctx)
    ids = cert_ids or tuple(service.repository.certificate_ids())
    if dry_run:
        steps: list[PlannedStep] = []
        unsupported: list[str] = []
        for cert_id in ids:
            found, missing = _dry_run_steps(service, cert_id)
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
    for cert_id in ids:
        for result in service.deploy(cert_id, force=force):
            if result.skipped:
                out.print(f"{cert_id}/{result.binding}: {result.message}")
            elif result.ok:
                out.print(f"{cert_id}/{result.binding}: [green]deployed[/green] ({result.message})")
            else:
                failed = True
                out.print(f"{cert_id}/{result.binding}: [red]failed[/red]: {result.message}")
    if failed:
        sys.exit(1)
