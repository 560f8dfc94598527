"""`certkeeper ca`: the built-in CA."""

from __future__ import annotations

from pathlib import Path

import click

from certkeeper.cli.common import console, open_service


@click.group()
def ca() -> None:
    """The built-in CA (issuer type internal-ca)."""


def _internal(ctx: click.Context, name: str):  # type: ignore[no-untyped-def]
    from certkeeper.errors import ConfigError
    from certkeeper.issuers.internal_ca import InternalCA

    service = open_service(ctx, sync=False)
    issuer = service.context.issuer(name)
    if not isinstance(issuer, InternalCA):
        raise ConfigError(f"issuer {name!r} is not a built-in CA (type internal-ca)")
    return service, issuer


@ca.command("init")
@click.option("--issuer", "name", default="internal", show_default=True, help="Which internal-ca issuer.")
@click.option("--force", is_flag=True, help="Replace an existing CA (clients must trust the new root).")
@click.pass_context
def init_(ctx: click.Context, name: str, force: bool) -> None:
    """Create the root and issuing CA (done automatically on first use)."""
    _service, issuer = _internal(ctx, name)
    issuer.initialize(force=force)
    from certkeeper.pki import parse

    root = parse.cert_info(parse.load_certificates(issuer.root_pem(), what="root")[0])
    console().print(
        f"CA {name}: root {root.subject}, valid until {root.not_after:%Y-%m-%d}, sha256 {root.fingerprint_sha256}"
    )


@ca.command("export")
@click.option("--issuer", "name", default="internal", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--chain", is_flag=True, help="Also include the issuing CA certificate.")
@click.pass_context
def export(ctx: click.Context, name: str, out_path: Path, chain: bool) -> None:
    """Write the root certificate (PEM) for clients' trust stores (Group Policy, Intune, ...)."""
    from certkeeper.atomicfile import atomic_write

    _service, issuer = _internal(ctx, name)
    if not issuer.is_initialized():
        issuer.initialize()
    data = issuer.root_pem() + (issuer.chain_pem() if chain else b"")
    atomic_write(out_path, data, mode=0o644)
    console().print(f"Wrote {out_path}: import it into 'Trusted Root Certification Authorities' on clients")
