"""`certkeeper account`: the ACME account of an issuer (register, show, deactivate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from certkeeper.cli.common import console, open_service, print_json

if TYPE_CHECKING:
    from certkeeper.issuers import SupportsAccounts


@click.group()
def account() -> None:
    """ACME accounts: one per issuer (directory and contact); the key is stored encrypted."""


def _acme(ctx: click.Context, name: str) -> SupportsAccounts:
    from certkeeper.errors import ConfigError
    from certkeeper.issuers import SupportsAccounts

    service = open_service(ctx, sync=False)
    issuer = service.context.issuer(name)
    if not isinstance(issuer, SupportsAccounts):
        raise ConfigError(f"issuer {name!r} is not an ACME issuer (type acme)")
    return issuer


def _print(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    out = console()
    for key in ("issuer", "directory", "url", "status", "contact", "key_algorithm"):
        if key in info:
            value = info[key]
            text = ", ".join(value) if isinstance(value, list) else ("-" if value is None else str(value))
            out.print(f"{key + ':':<15}{text}")


ISSUER_OPTION = click.option("--issuer", "name", required=True, help="Issuer name (an [issuers.X] of type acme).")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print as JSON.")


@account.command()
@ISSUER_OPTION
@JSON_OPTION
@click.pass_context
def register(ctx: click.Context, name: str, as_json: bool) -> None:
    """Register the account now (done automatically on first issue; needs agree_tos = true)."""
    _print(_acme(ctx, name).register(), as_json)


@account.command()
@ISSUER_OPTION
@JSON_OPTION
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show the account's URL, status and contact as the CA sees them (never the key)."""
    _print(_acme(ctx, name).show(), as_json)


@account.command()
@ISSUER_OPTION
@JSON_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def deactivate(ctx: click.Context, name: str, as_json: bool, yes: bool) -> None:
    """Deactivate the account at the CA (irreversible) and forget its key; the next issue
    registers a new one."""
    if not yes:
        click.confirm(f"Deactivate the ACME account of issuer {name!r}? This cannot be undone", abort=True)
    _print(_acme(ctx, name).deactivate(), as_json)
