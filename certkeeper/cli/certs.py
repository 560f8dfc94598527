"""Certificates: issue, list, show, export, import, remove."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certkeeper.cli.common import (
    complete_certificate_ids,
    console,
    days_left,
    fmt_time,
    open_service,
    print_json,
    print_table,
)
from certkeeper.model import DEFAULT_KEY_TYPE, KeyType

KEY_TYPES = [key_type.value for key_type in KeyType]


def _outcome_dict(outcome: object) -> dict[str, object]:
    from dataclasses import asdict, is_dataclass

    assert is_dataclass(outcome) and not isinstance(outcome, type)
    return asdict(outcome)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--id", "cert_id", help="Certificate id (default: the first name).")
@click.option("--issuer", help="Issuer name from the config (default: the built-in CA, 'internal').")
@click.option("--key-type", type=click.Choice(KEY_TYPES), help="Key algorithm (default rsa2048: every Exchange).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def issue(ctx: click.Context, names: tuple[str, ...], cert_id: str | None, issuer: str | None,
          key_type: str | None, as_json: bool) -> None:
    """Issue a certificate for NAMES, store it encrypted and keep renewing it.

    With no NAMES, the names come from the [outlook_anywhere] table of the config.
    """
    import sys

    from certkeeper.pki.keys import generate_ahead

    key = KeyType(key_type) if key_type else None
    # the key is made on another core while the store and the issuer load (an RSA key takes
    # 50-300 ms); a certificate already under management with another key type just makes its own
    generate_ahead(key or DEFAULT_KEY_TYPE)
    service = open_service(ctx)
    stream = sys.stderr if as_json else sys.stdout
    if stream.isatty():
        # a person watching: a rich spinner with each step (account, order, authorizations, ...)
        out = console(stderr=as_json)
        with out.status("issuing...") as status:
            def progress(step: str) -> None:
                status.update(step)
                out.print(f"  [dim]{step}[/dim]")

            outcome = service.issuance.issue(names, cert_id=cert_id, issuer=issuer, key_type=key, progress=progress)
    else:
        # a script or a log: plain lines, and no rich import on this path
        outcome = service.issuance.issue(
            names, cert_id=cert_id, issuer=issuer, key_type=key,
            progress=lambda step: click.echo(f"  {step}", err=as_json),
        )
    if as_json:
        print_json(_outcome_dict(outcome))
        return
    click.echo(f"{click.style('Issued', fg='green', bold=True) if sys.stdout.isatty() else 'Issued'} "
               f"{outcome.certificate_id} (revision {outcome.revision}) by {outcome.issuer}")
    click.echo(f"  names:        {', '.join(outcome.names)}")
    click.echo(f"  serial:       {outcome.serial}")
    click.echo(f"  sha256:       {outcome.fingerprint}")
    click.echo(f"  valid:        {fmt_time(outcome.not_before)} -> {fmt_time(outcome.not_after)}")
    click.echo(f"  renews after: {fmt_time(outcome.renewal_time)}")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List managed certificates: names, issuer, expiry, renewal time and health."""
    from certkeeper.lifecycle.health import health
    from certkeeper.store import certificates
    from certkeeper.store.facts import certificate_facts

    service = open_service(ctx, read_only=True)
    now = service.clock.now()
    rows: list[dict[str, Any]] = []
    with service.store.session() as session:
        items = certificates.overview(session)
    for item in items:
        state, reason = health(certificate_facts(item), now)
        rows.append({
            "id": item.id, "names": list(item.names), "issuer": item.issuer, "not_after": item.not_after,
            "days_left": days_left(item.not_after, now), "renewal_time": item.renewal_time,
            "health": state.value, "reason": reason, "serial": item.serial, "revision": item.revision,
            "in_config": item.source != "unconfigured",
        })
    if as_json:
        print_json(rows)
        return
    if not rows:
        console().print("No certificates yet. Issue one: certkeeper issue mail.contoso.com autodiscover.contoso.com")
        return
    colours = {"Ready": "green", "Renewing": "cyan", "Expiring": "yellow", "Failing": "red", "Expired": "red",
               "Missing": "yellow"}
    print_table(
        ["ID", "NAMES", "ISSUER", "NOT AFTER", "DAYS", "RENEWS", "HEALTH"],
        [
            [
                str(row["id"]), ",".join(row["names"]), str(row["issuer"]),
                fmt_time(row["not_after"]),
                "-" if row["days_left"] is None else f"{row['days_left']:.0f}",
                fmt_time(row["renewal_time"]),
                str(row["health"]),
            ]
            for row in rows
        ],
        styles={6: colours},
    )
    dropped = [str(row["id"]) for row in rows if not row["in_config"]]
    if dropped:
        click.echo(f"Not in the config any more (kept in the store, no longer deployed): {', '.join(dropped)}")


@click.command()
@click.argument("cert_id", shell_complete=complete_certificate_ids)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--pem", is_flag=True, help="Print the certificate and chain as PEM (never the key).")
@click.pass_context
def show(ctx: click.Context, cert_id: str, as_json: bool, pem: bool) -> None:
    """Show one certificate: spec, revisions, deployments and recent events."""
    from certkeeper.reports import describe_certificate

    service = open_service(ctx, read_only=True)
    if pem:
        bundle = service.inventory.bundle(cert_id)
        click.echo((bundle.cert_pem + bundle.chain_pem).decode(), nl=False)
        return
    data = describe_certificate(service.store, service.clock.now(), cert_id)
    if as_json:
        print_json(data)
        return
    out = console()
    out.print(f"[bold]{data['id']}[/bold]  {data['health']}: {data['reason']}")
    from certkeeper.hostnames import to_unicode

    shown = [name if to_unicode(name) == name else f"{name} ({to_unicode(name)})" for name in data["names"]]
    out.print(f"  names:   {', '.join(shown)}")
    out.print(f"  issuer:  {data['issuer']}   key: {data['key_type']}")
    current = data.get("current")
    if current:
        out.print(f"  current: revision {current['revision']}, serial {current['serial']}")
        out.print(f"           valid {fmt_time(current['not_before'])} -> {fmt_time(current['not_after'])}")
        out.print(f"           renews after {fmt_time(current['renewal_time'])}")
        out.print(f"           sha256 {current['fingerprint']}")
    if data.get("last_failure"):
        after = ("no automatic retry until `renew --force`" if data["rejected"]
                 else f"next attempt {fmt_time(data.get('next_attempt_at'))}")
        out.print(f"  last failure: {data['last_failure']}  ({after})")
    if not data.get("in_config", True):
        out.print("  not in the config any more: kept in the store, no longer deployed")
    for deployment in data.get("deployments", []):
        out.print(
            f"  binding {deployment['binding']} {deployment['node'] or ''}: {deployment['state']}, "
            f"serves {deployment['served_fingerprint'] or '-'} (verified {fmt_time(deployment['verified_at'])})"
        )
    out.print("  recent events:")
    for event in data["events"][:10]:
        out.print(f"    {fmt_time(event['at'])}  {event['kind']}: {event['message']}")


@click.command()
@click.argument("cert_id", shell_complete=complete_certificate_ids)
@click.option("--format", "fmt", type=click.Choice(["pem", "pfx"]), required=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), required=True,
              help="File to write (replaced atomically, mode 0600; never a link or a device), or - for "
                   "standard output.")
@click.option("--pfx-encryption", type=click.Choice(["aes256", "legacy"]), default="aes256", show_default=True,
              help="legacy (3DES/SHA-1) for Windows Server 2016 and older, which cannot import AES PFX.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the PFX password (default: generate one and print it once).")
@click.pass_context
def export(ctx: click.Context, cert_id: str, fmt: str, out_path: Path, pfx_encryption: str,
           password_file: Path | None) -> None:
    """Write the current certificate, chain and key to a file (mode 0600), or to standard output
    with --out -.

    PEM holds the leaf, the chain and the key. PFX is encrypted with a password. The file is
    created new and owned by the user running certkeeper, whatever was at the path; a symbolic
    link or a device (/dev/stdout) there is refused: use --out - for standard output.
    """
    import sys

    from certkeeper.atomicfile import check_target, remove_stale_temps
    from certkeeper.errors import InputError
    from certkeeper.pki.pkcs12.build import generate_password

    to_stdout = str(out_path) == "-"
    if to_stdout and fmt == "pfx" and sys.stdout.isatty():
        raise click.UsageError("a PFX is binary: redirect standard output (--out - > mail.pfx) or give a file")
    if not to_stdout:
        try:
            check_target(out_path)
        except OSError as exc:
            raise InputError(f"cannot write {out_path}: {exc.strerror}; for standard output use --out -") from None
        remove_stale_temps(out_path)  # what a killed export to this path left (it holds a key)
    service = open_service(ctx, read_only=True)
    password: bytes | None = None
    generated = False
    if fmt == "pfx":
        if password_file is not None:
            password = password_file.read_bytes().rstrip(b"\r\n")
        else:
            password, generated = generate_password().encode(), True
    out = console(stderr=to_stdout)  # with --out -, standard output holds only the export
    exported = service.inventory.export(
        cert_id, fmt=fmt, out=None if to_stdout else out_path, password=password, encryption=pfx_encryption
    )
    if exported.data is not None:
        sys.stdout.buffer.write(exported.data)
        sys.stdout.buffer.flush()
    else:
        out.print(f"Wrote {out_path} ({fmt}{', ' + pfx_encryption if fmt == 'pfx' else ''}, mode 0600)")
    if not exported.audited:
        click.echo("note: the store's disk cannot be written, so this export is not in `show`'s events", err=True)
    if generated and password is not None:
        out.print(f"PFX password (shown once, not stored): [bold]{password.decode()}[/bold]")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the PFX password.")
@click.option("--id", "cert_id", help="Certificate id (default: the first name).")
@click.option("--issuer", default="internal", show_default=True, help="Issuer that renews it from now on.")
@click.option("--allow-expired", is_flag=True, help="Import an expired certificate too (it is renewed at once).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_(ctx: click.Context, file: Path, password_file: Path | None, cert_id: str | None, issuer: str,
            allow_expired: bool, as_json: bool) -> None:
    """Bring an existing PEM or PFX (e.g. the Exchange certificate in use today) under management.

    The file must hold the server certificate and its private key (RSA or ECDSA), and may hold its
    chain. Refused with one line: a certificate without its key, only CA certificates, a DSA key,
    a PFX password missing or wrong, a malformed certificate, a CA certificate as the server
    certificate, and an expired one unless --allow-expired.
    """
    service = open_service(ctx)
    password = password_file.read_bytes().rstrip(b"\r\n") if password_file else None
    outcome = service.inventory.import_file(
        file.read_bytes(), what=str(file), password=password, cert_id=cert_id, issuer=issuer,
        allow_expired=allow_expired,
    )
    if as_json:
        print_json(_outcome_dict(outcome))
        return
    out = console()
    out.print(f"[bold green]Imported[/bold green] {outcome.certificate_id} (revision {outcome.revision})")
    out.print(f"  names:        {', '.join(outcome.names)}")
    out.print(f"  valid until:  {fmt_time(outcome.not_after)}; renews after {fmt_time(outcome.renewal_time)} "
              f"from issuer {outcome.issuer}")


@click.command()
@click.argument("cert_id", shell_complete=complete_certificate_ids)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def remove(ctx: click.Context, cert_id: str, yes: bool) -> None:
    """Stop managing CERT_ID and delete its stored revisions and keys (served files stay)."""
    service = open_service(ctx)
    if not yes:
        click.confirm(f"Delete {cert_id} and all its stored keys?", abort=True)
    service.inventory.remove(cert_id)
    console().print(f"Removed {cert_id}")
