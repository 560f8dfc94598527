"""``certkeeper doctor [--server S] [--json]``: the Exchange pre-flight, one line per check."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from certkeeper.cli.common import console, open_service, print_json

if TYPE_CHECKING:
    from certkeeper.binders.exchange.doctor import DoctorLine
    from certkeeper.service import Service


def _exchange_binders(service: Service) -> list[tuple[str, Any, bool]]:
    """(certificate id, ExchangeBinder, key is ECDSA) for this node's exchange bindings."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from certkeeper.binders.exchange import ExchangeBinder
    from certkeeper.errors import NotFound

    out = []
    for cert_id, binder in service.deployment.binders_of_type("exchange"):
        assert isinstance(binder, ExchangeBinder)
        try:
            key = x509.load_pem_x509_certificate(service.inventory.bundle(cert_id).cert_pem).public_key()
            ecdsa = isinstance(key, ec.EllipticCurvePublicKey)
        except NotFound:
            ecdsa = False
        out.append((cert_id, binder, ecdsa))
    return out


@click.command()
@click.option("--server", "servers", multiple=True, help="Only this Exchange server (repeat).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx: click.Context, servers: tuple[str, ...], as_json: bool) -> None:
    """Pre-flight for Exchange bindings: Auth certificate, Back End 444, SNI, Require SSL, ECC, rights,
    certificate Status, names. Exit status 1 when a check fails."""
    from certkeeper.binders.exchange import doctor as checks

    service = open_service(ctx)
    lines: list[DoctorLine] = []
    for _cert_id, binder, ecdsa in _exchange_binders(service):
        lines += checks.environment(binder.remote_kerberos)
        for server in binder.servers:
            if servers and server.name.lower() not in {s.lower() for s in servers}:
                continue
            session = binder.open_session(server.name)
            try:
                lines += checks.run(session, binder.version, now=service.clock.now(), key_is_ecdsa=ecdsa)
            finally:
                session.close()
    if as_json:
        print_json({"checks": [line.to_dict() for line in lines]})
    else:
        out = console()
        colours = {"ok": "green", "warn": "yellow", "fail": "red"}
        for line in lines:
            colour = colours[line.status]
            out.print(f"[{colour}]{line.status:4}[/{colour}] {line.server} {line.check}: {line.message}")
        if not lines:
            out.print("No exchange binding on this node.")
    if any(line.status == "fail" for line in lines):
        sys.exit(1)
