"""`certkeeper secret`: named secrets stored encrypted, referenced in the config as secret:NAME."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from certkeeper.cli.common import console, fmt_time, open_service, print_json


@click.group()
def secret() -> None:
    """Named secrets (webhook URLs, SMTP passwords), encrypted at rest."""


@secret.command("set")
@click.argument("name")
@click.option("--from-file", type=click.File("r"), help="Read the value from a file instead of stdin/prompt.")
@click.pass_context
def set_(ctx: click.Context, name: str, from_file: TextIO | None) -> None:
    """Store NAME's value (read from stdin, a file, or a hidden prompt). Reference it as secret:NAME."""
    if from_file is not None:
        value = from_file.read().strip()
    elif not sys.stdin.isatty():
        value = sys.stdin.read().strip()
    else:
        value = click.prompt(f"value for {name}", hide_input=True)
    if not value:
        raise click.UsageError("empty secret value")
    from certkeeper.store import secrets

    store = open_service(ctx, sync=False).store
    with store.session() as session:
        secrets.put(session, store.sealer, name, value, store.clock.now())
    console().print(f"Stored secret {name} (use \"secret:{name}\" in certkeeper.toml)")


@secret.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print [{name, updated_at}] as JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List stored secret names (never values)."""
    from certkeeper.store import secrets

    with open_service(ctx, sync=False).store.session() as session:
        names = secrets.names(session)
    if as_json:
        print_json([{"name": name, "updated_at": updated} for name, updated in names])
        return
    for name, updated in names:
        console().print(f"{name}  (updated {fmt_time(updated)})")


@secret.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete a stored secret."""
    from certkeeper.store import secrets

    with open_service(ctx, sync=False).store.session() as session:
        removed = secrets.delete(session, name)
    console().print(f"Deleted {name}" if removed else f"No secret named {name}")
