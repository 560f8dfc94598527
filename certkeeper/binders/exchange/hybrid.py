"""Hybrid mail flow: point the connectors and the hybrid configuration at the new certificate.

Exchange 2013 and later name the transport certificate by ``<I>issuer<S>subject`` in
``TlsCertificateName`` on Send and Receive connectors and in ``Set-HybridConfiguration``
(https://learn.microsoft.com/powershell/module/exchange/set-sendconnector,
https://techcommunity.microsoft.com/blog/exchange/tls-certificates-in-exchange-hybrid---common-issues--how-to-fix-them/4420592).
The string is read from ``Get-ExchangeCertificate`` (Windows' own formatting of the names, not
Python's RFC 4514 form); Let's Encrypt rotates intermediates, so the issuer part changes between
renewals (https://letsencrypt.org/2024/03/19/new-intermediate-certificates). A certificate a
connector still names cannot be removed (https://github.com/win-acme/win-acme/issues/1754).

Exchange 2010 SP2/SP3 connectors have no ``TlsCertificateName``: 2010 picks the STARTTLS
certificate by the connector's FQDN, newest first, and the hybrid configuration names it by
thumbprint (``-SecureMailCertificateThumbprint``). So on 2010 the binder checks, before it changes
anything, that the new certificate covers every TLS connector's FQDN, and updates the thumbprint.

Connectors and the hybrid configuration are organisation-wide (Active Directory), so they are
updated once, after every server has the new certificate enabled; a failure puts back the values
already changed and the caller re-enables the previous certificate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from certkeeper.binders.exchange import parse, scripts
from certkeeper.binders.powershell import Command, ExchangeVersion, Placeholder, Runner
from certkeeper.errors import BindError
from certkeeper.hostnames import covers

log = logging.getLogger(__name__)

NEW_NAME = Placeholder(
    "TlsCertificateName",
    "'<I>' + Issuer + '<S>' + Subject of Get-ExchangeCertificate -Thumbprint <new> (Windows' formatting)",
)


@dataclass(frozen=True)
class Change:
    kind: str  # send | receive | hybrid
    identity: str
    before: str

    def restore(self, version: ExchangeVersion) -> Command:
        if self.kind == "send":
            return scripts.set_send_connector(self.identity, self.before)
        if self.kind == "receive":
            return scripts.set_receive_connector(self.identity, self.before)
        return scripts.set_hybrid_configuration(version, self.before)

    def describe(self) -> str:
        return {"send": "Send connector", "receive": "Receive connector"}.get(self.kind, "hybrid configuration") + (
            f" {self.identity}" if self.identity else ""
        )


def check_connectors_2010(runner: Runner, server: str, names: Sequence[str]) -> None:
    """Exchange 2010: refuse when a TLS connector's FQDN is not on the new certificate."""
    records = [*runner.invoke(scripts.get_send_connectors()), *runner.invoke(scripts.get_receive_connectors(server))]
    for record in records:
        if not isinstance(record, dict):
            continue
        tls = (
            str(record.get("RequireTLS", "")).lower() == "true"
            or str(record.get("DomainSecureEnabled", "")).lower() == "true"
        )
        fqdn = str(record.get("Fqdn") or "").strip().lower()
        if tls and fqdn and not any(covers(name, fqdn) for name in names):
            raise BindError(
                f"connector {parse.identity(record)} uses TLS with FQDN {fqdn}, which the new certificate does "
                "not cover; Exchange 2010 picks the STARTTLS certificate by that FQDN"
            )


def update(
    version: ExchangeVersion,
    runner: Runner,
    first_server: str,
    servers: Sequence[str],
    old_thumb: str,
    new_thumb: str,
) -> list[str]:
    """Point everything that named the previous certificate at the new one; notes for the log.

    Raises:
        BindError: an update failed; the values already changed were put back (the message says
            which, and whether putting back worked).
    """
    changes: list[Change] = []
    try:
        if not version.is_2013_or_later:
            record = parse.first_record(runner.invoke(scripts.get_hybrid_configuration()))
            if record is not None and parse.same_name(record.get("SecureMailCertificateThumbprint"), old_thumb):
                runner.invoke(scripts.set_hybrid_configuration(version, new_thumb))
                changes.append(Change("hybrid", "", old_thumb))
            return [f"{change.describe()} now names {new_thumb}" for change in changes]
        old = parse.first_record(runner.invoke(scripts.get_certificate(first_server, old_thumb)))
        new = parse.first_record(runner.invoke(scripts.get_certificate(first_server, new_thumb)))
        if new is None:
            raise BindError(f"Get-ExchangeCertificate on {first_server} does not list {new_thumb}")
        if old is None:
            return [f"the previous certificate {old_thumb} is not on {first_server}; no connector can name it"]
        old_name, new_name = parse.tls_certificate_name(old), parse.tls_certificate_name(new)
        if parse.same_name(old_name, new_name):
            return ["same issuer and subject: TlsCertificateName stays as it is"]
        for record in runner.invoke(scripts.get_send_connectors()):
            if isinstance(record, dict) and parse.same_name(record.get("TlsCertificateName"), old_name):
                runner.invoke(scripts.set_send_connector(parse.identity(record), new_name))
                changes.append(Change("send", parse.identity(record), str(record.get("TlsCertificateName"))))
        for server in servers:
            for record in runner.invoke(scripts.get_receive_connectors(server)):
                if isinstance(record, dict) and parse.same_name(record.get("TlsCertificateName"), old_name):
                    runner.invoke(scripts.set_receive_connector(parse.identity(record), new_name))
                    changes.append(Change("receive", parse.identity(record), str(record.get("TlsCertificateName"))))
        record = parse.first_record(runner.invoke(scripts.get_hybrid_configuration()))
        if record is not None and parse.same_name(record.get("TlsCertificateName"), old_name):
            runner.invoke(scripts.set_hybrid_configuration(version, new_name))
            changes.append(Change("hybrid", "", str(record.get("TlsCertificateName"))))
    except BindError as exc:
        raise BindError(f"{exc}; {restore(version, runner, changes)}") from None
    return [f"{change.describe()} now names the new certificate" for change in changes]


def restore(version: ExchangeVersion, runner: Runner, changes: Sequence[Change]) -> str:
    """Put back what :func:`update` changed, newest first; what happened, for the error message."""
    if not changes:
        return "no connector was changed"
    notes = []
    for change in reversed(changes):
        try:
            runner.invoke(change.restore(version))
            notes.append(f"{change.describe()} put back")
        except BindError as exc:
            log.error("putting back %s failed: %s", change.describe(), exc)
            notes.append(f"{change.describe()} NOT put back ({exc})")
    return "; ".join(notes)


def planned(
    version: ExchangeVersion, first_server: str, servers: Sequence[str], old_thumb: str, new_thumb: str
) -> list[tuple[str, Command, str]]:
    """The hybrid steps for a dry run: (step, command, note)."""
    if not version.is_2013_or_later:
        return [
            ("hybrid-configuration-read", scripts.get_hybrid_configuration(), ""),
            (
                "hybrid-configuration",
                scripts.set_hybrid_configuration(version, new_thumb),
                f"when SecureMailCertificateThumbprint is the previous certificate {old_thumb}",
            ),
        ]
    identity = Placeholder("Identity", "the connector's Identity, from the read step above")
    steps: list[tuple[str, Command, str]] = [
        (
            "hybrid-previous-name",
            scripts.get_certificate(first_server, old_thumb),
            "Issuer and Subject of the previous certificate",
        ),
        (
            "hybrid-new-name",
            scripts.get_certificate(first_server, new_thumb),
            "Issuer and Subject of the new certificate",
        ),
        ("send-connectors", scripts.get_send_connectors(), ""),
        (
            "send-connector",
            scripts.set_send_connector(identity, NEW_NAME),
            "for each Send connector whose TlsCertificateName names the previous certificate",
        ),
    ]
    for server in servers:
        steps.append((f"receive-connectors {server}", scripts.get_receive_connectors(server), ""))
    steps.append(
        (
            "receive-connector",
            scripts.set_receive_connector(identity, NEW_NAME),
            "for each Receive connector whose TlsCertificateName names the previous certificate",
        )
    )
    steps.append(("hybrid-configuration-read", scripts.get_hybrid_configuration(), ""))
    steps.append(
        (
            "hybrid-configuration",
            scripts.set_hybrid_configuration(version, NEW_NAME),
            "when its TlsCertificateName names the previous certificate",
        )
    )
    return steps
