"""`certkeeper db` (migrations) and `certkeeper keys` (secrets at rest)."""

from __future__ import annotations

import click

from certkeeper.cli.common import console, load_config


@click.group()
def db() -> None:
    """Database migrations."""


def _engine(ctx: click.Context):  # type: ignore[no-untyped-def]
    from certkeeper.store.db import make_engine

    config = load_config(ctx)
    if not config.settings.store.url:
        from certkeeper.atomicfile import make_dirs

        make_dirs(config.data_dir, 0o700)
    return make_engine(config.store_url)


@db.command()
@click.argument("revision", default="head")
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the store to REVISION (default: the latest)."""
    from certkeeper.store import db as store_db

    engine = _engine(ctx)
    store_db.upgrade(engine, revision)
    console().print(f"Store at {store_db.current_revision(engine)}")


@db.command()
@click.argument("revision")
@click.pass_context
def downgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the store down to REVISION ('base' removes every table)."""
    from certkeeper.store import db as store_db

    engine = _engine(ctx)
    store_db.downgrade(engine, revision)
    console().print(f"Store at {store_db.current_revision(engine) or 'base'}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print {current, head, up_to_date} as JSON.")
@click.pass_context
def current(ctx: click.Context, as_json: bool) -> None:
    """Print the store's migration and the one this certkeeper needs."""
    from certkeeper.store import db as store_db

    engine = _engine(ctx)
    now, head = store_db.current_revision(engine), store_db.head_revision()
    if as_json:
        from certkeeper.cli.common import print_json

        print_json({"current": now, "head": head, "up_to_date": now == head})
        return
    state = "up to date" if now == head else "needs 'certkeeper db upgrade'"
    console().print(f"current {now or 'base'}, head {head}: {state}")


@db.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.pass_context
def prune(ctx: click.Context, dry_run: bool) -> None:
    """Delete revisions past [store] revision_retention_days (the daemon does this daily).

    Revisions whose certificate expired, or whose request failed, longer ago than the retention
    go, with their sealed keys. The current revision, pending ones and what any node last served
    always stay.
    """
    from certkeeper.service import Service

    config = load_config(ctx)
    service = Service.open(config, create=False)
    days = config.settings.store.revision_retention_days
    if not days:
        console().print("revision_retention_days = 0: every revision is kept")
        return
    found = service.inventory.prune(service.clock.now(), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for item in found:
        console().print(f"{verb} {item.certificate_id} revision {item.number}", highlight=False)
    console().print(f"{len(found)} revisions {verb} (retention {days:g} days)", highlight=False)


@click.group()
def keys() -> None:
    """The encryption key for private keys and secrets at rest."""


@keys.command()
@click.pass_context
def rotate(ctx: click.Context) -> None:
    """Re-encrypt every stored secret under a new key, then retire the old key.

    The key file keeps both keys until every row is re-encrypted, so a crash at any point loses
    nothing. With $CERTKEEPER_SECRET_KEY, the new key is printed for you to store instead.
    """
    import os

    from certkeeper.errors import SecretKeyError
    from certkeeper.sealing import KeyFile, Sealer, generate_key
    from certkeeper.service import Service

    config = load_config(ctx)
    key_file = KeyFile.of(config)
    service = Service.open(config, create=False)
    old_keys = service.store.sealer.keys
    new_key = generate_key()
    from_env = bool(os.environ.get("CERTKEEPER_SECRET_KEY"))
    if not from_env:
        if key_file.read() != old_keys:
            raise SecretKeyError(f"{config.secret_key_file} changed while rotating; nothing done")
        key_file.write([new_key, *old_keys])
    count = service.inventory.reseal(Sealer([new_key, *old_keys]))
    if not from_env:
        key_file.write([new_key])
    out = console()
    out.print(f"Re-encrypted {count} stored secrets under a new key.")
    if from_env:
        out.print("Set CERTKEEPER_SECRET_KEY to this new key (shown once):")
        click.echo(new_key.decode())
    else:
        out.print(f"New key written to {config.secret_key_file}; back it up.")
