"""``certkeeper dns test|register``: try an issuer's dns-01 setup before the first issuance.

``dns test --issuer X NAME`` publishes a throw-away TXT value for NAME the way an issuance would
(CNAME following, the provider or PowerShell, the propagation wait), then removes it; with
``--dry-run`` it only prints what it would do (for ``mode = "windows"``, the exact PowerShell
commands, and with ``--show-script`` their scripts). ``dns register`` registers names at acme-dns
ahead of time and prints the CNAME records the zone needs.
"""

from __future__ import annotations

import secrets
import sys
from typing import Any

import click

from certkeeper.cli.common import open_service, print_json


def _solver(ctx: click.Context, issuer_name: str) -> Any:
    from certkeeper.errors import ConfigError
    from certkeeper.issuers.acme.solvers import SupportsChallengeSolvers

    service = open_service(ctx, sync=False)
    issuer = service.context.issuer(issuer_name)
    solver = issuer.solvers.get("dns-01") if isinstance(issuer, SupportsChallengeSolvers) else None
    if solver is None:
        raise ConfigError(f"issuer {issuer_name!r} has no dns-01 solver (add an [issuers.{issuer_name}.dns01] table "
                          "and a dns-01 challenge or solvers rule)")
    return solver


@click.group()
def dns() -> None:
    """dns-01: try the setup, register names at acme-dns."""


@dns.command("test")
@click.argument("names", nargs=-1, required=True)
@click.option("--issuer", "issuer_name", required=True, help="The acme issuer whose [dns01] table to use.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option("--show-script", is_flag=True, help="With --dry-run: print the PowerShell scripts too (windows).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def test(ctx: click.Context, names: tuple[str, ...], issuer_name: str, dry_run: bool, show_script: bool,
         as_json: bool) -> None:
    """Publish and remove a test TXT record for each NAME, as an issuance would (or --dry-run)."""
    from certkeeper.errors import CertkeeperError

    solver = _solver(ctx, issuer_name)
    results: list[dict[str, Any]] = []
    failed = 0
    for name in names:
        key_authorization = "certkeeper-dns-test." + secrets.token_urlsafe(16)
        entry: dict[str, Any] = {"name": name}
        try:
            if dry_run:
                entry["plan"] = solver.plan(name, key_authorization)
                if show_script and hasattr(solver, "scripts"):
                    entry["scripts"] = [{"command": command.summary(), "script": command.script}
                                        for command in solver.scripts(name, key_authorization)]
            else:
                try:
                    solver.present(name, "dns-test", key_authorization)
                    entry["ok"] = True
                finally:
                    try:
                        solver.cleanup(name, "dns-test", key_authorization)
                    except CertkeeperError as exc:
                        entry["cleanup_error"] = str(exc)
        except CertkeeperError as exc:
            failed += 1
            entry.update(ok=False, error=str(exc))
        results.append(entry)
    if as_json:
        print_json(results)
    else:
        for entry in results:
            if "plan" in entry:
                click.echo(f"{entry['name']}: would")
                for line in entry["plan"]:
                    click.echo(f"  {line}")
                for script in entry.get("scripts", []):
                    click.echo(f"\n# {script['command']}\n{script['script']}\n")
            elif entry.get("ok"):
                click.echo(f"{entry['name']}: ok (published, seen by the name servers, removed)")
            if entry.get("error"):
                click.echo(f"{entry['name']}: failed: {entry['error']}")
            if entry.get("cleanup_error"):
                click.echo(f"{entry['name']}: removing the test record failed: {entry['cleanup_error']}")
    if failed:
        sys.exit(1)


@dns.command("register")
@click.argument("names", nargs=-1, required=True)
@click.option("--issuer", "issuer_name", required=True, help="The acme issuer with mode = \"acme-dns\".")
@click.option("--again", is_flag=True, help="Register anew, replacing stored credentials (a new CNAME target).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def register(ctx: click.Context, names: tuple[str, ...], issuer_name: str, again: bool, as_json: bool) -> None:
    """Register NAMES at acme-dns (once; credentials are stored encrypted) and print the CNAMEs to create."""
    from certkeeper.errors import ConfigError

    solver = _solver(ctx, issuer_name)
    if not hasattr(solver, "register"):
        raise ConfigError(f"issuer {issuer_name!r}: dns01 mode is not 'acme-dns'")
    rows = []
    for name in names:
        registration, created = solver.register(name, again=again)
        rows.append({"name": name, "cname": registration.cname(name), "registered_now": created,
                     "in_place": solver.cname_in_place(name, registration)})
    if as_json:
        print_json(rows)
        return
    for row in rows:
        state = "in place" if row["in_place"] else "create it"
        click.echo(f"{row['cname']}    ; {state}{' (registered now)' if row['registered_now'] else ''}")
