"""What is stored, handled as a whole: read a bundle, import, export, revoke, remove, prune."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from certkeeper import hostnames
from certkeeper.errors import ConfigError, InputError, NotFound, StoreError
from certkeeper.hostnames import NamePolicy
from certkeeper.issuers import SupportsRevoke
from certkeeper.lifecycle.renewal import renewal_time
from certkeeper.model import Bundle, RevisionState
from certkeeper.pki import acceptance, parse
from certkeeper.pki import keys as pki_keys
from certkeeper.sealing import Sealer
from certkeeper.service.context import ServiceContext
from certkeeper.service.issuance import IssueOutcome, renew_before_of
from certkeeper.service.specs import SOURCE_IMPORT, certificate_id_for, check_certificate_id
from certkeeper.store import certificates, events, revisions, secrets

log = logging.getLogger(__name__)

#: RFC 5280 §5.3.1 reason codes an operator may give to `certkeeper revoke`
REVOCATION_REASONS = {
    "unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5,
}


class Exported(NamedTuple):
    """An export: its bytes when no file was named, and whether the audit trail records it."""

    data: bytes | None
    audited: bool


class PrunedRevision(NamedTuple):
    """A revision ``prune`` deleted (or would delete)."""

    certificate_id: str
    number: int


class Inventory:
    """Reads and moves stored certificates as a whole."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    def bundle(self, cert_id: str, revision: int | None = None) -> Bundle:
        """The current (or a given) issued revision with its key, for export and binding."""
        store = self.context.store
        with store.session() as session:
            certificates.get(session, cert_id)
            row = revisions.current(session, cert_id) if revision is None else revisions.by_number(
                session, cert_id, revision)
            if row is None or row.cert_pem is None or row.state != RevisionState.ISSUED.value:
                what = "no issued revision yet" if revision is None else f"no issued revision {revision}"
                raise NotFound(f"certificate {cert_id!r} has {what}")
            return revisions.bundle(store.sealer, row)

    def import_file(
        self,
        data: bytes,
        *,
        what: str,
        password: bytes | None,
        cert_id: str | None,
        issuer: str = "internal",
        allow_expired: bool = False,
    ) -> IssueOutcome:
        """Bring an existing PEM or PFX (e.g. today's Exchange certificate) under management.

        Everything :func:`certkeeper.pki.parse.read_import` refuses is refused with one line; an
        expired certificate only with ``allow_expired``."""
        key, leaf, chain = parse.read_import(
            data, password, what=what, now=self.context.clock.now(), allow_expired=allow_expired
        )
        info = parse.cert_info(leaf)
        if not info.names:
            raise InputError(f"{what}: the certificate has no DNS names (subjectAltName) to manage")
        # what was issued elsewhere is taken as it is; the issuer that renews it judges the names then
        names = hostnames.normalize_names(info.names, policy=NamePolicy.PRIVATE)
        key_type = pki_keys.key_type_of(key)
        if key_type is None:
            raise InputError(f"{what}: unsupported key type {info.key}")
        self.context.config.issuer_table(issuer)
        cert_id = check_certificate_id(cert_id) if cert_id else certificate_id_for(names)
        store, now = self.context.store, self.context.clock.now()
        with store.session() as session:
            if certificates.find(session, cert_id) is None:
                certificates.upsert(session, cert_id, names=names, issuer=issuer, key_type=key_type.value,
                                    source=SOURCE_IMPORT, now=now)
            cert = certificates.get(session, cert_id)
            due = renewal_time(info.not_before, info.not_after, renew_before=renew_before_of(cert.renew_before_seconds))
            row = revisions.add_imported(
                session, store.sealer, cert_id, issuer=cert.issuer, names=names, key_type=key_type.value,
                key_pem=pki_keys.private_key_pem(key), cert_pem=acceptance.pem(leaf),
                chain_pem=b"".join(acceptance.pem(c) for c in chain), now=now,
                facts={"serial": info.serial, "fingerprint_sha256": info.fingerprint_sha256,
                       "thumbprint_sha1": info.thumbprint_sha1, "not_before": info.not_before,
                       "not_after": info.not_after, "renewal_time": due},
            )
            events.record(session, "imported", f"revision {row.number} imported from {what}", at=now,
                          certificate_id=cert_id, revision_id=row.id, node=self.context.node,
                          details={"serial": info.serial})
            number = row.number
        return IssueOutcome(
            certificate_id=cert_id, revision=number, names=names, serial=info.serial,
            fingerprint=info.fingerprint_sha256, not_before=info.not_before, not_after=info.not_after,
            renewal_time=due, issuer=issuer, renewed=number > 1,
        )

    def export(
        self,
        cert_id: str,
        *,
        fmt: str,
        out: Path | None,
        password: bytes | None = None,
        encryption: str = "aes256",
    ) -> Exported:
        """Export the current revision: to ``out`` (replaced atomically, mode 0600, never through a
        link or onto a device), or, with ``out`` None, as bytes for the caller to write (standard
        output). The export is recorded in the audit trail when the store can be written."""
        from certkeeper.atomicfile import atomic_write
        from certkeeper.pki.export import export_bytes

        data = export_bytes(self.bundle(cert_id), fmt, password=password, encryption=encryption)
        if out is not None:
            try:
                atomic_write(out, data, mode=0o600)
            except OSError as exc:
                raise InputError(f"cannot write {out}: {exc.strerror}; for standard output use --out -") from None
        where = str(out) if out is not None else "standard output"
        try:
            with self.context.store.session() as session:
                events.record(session, "exported", f"exported as {fmt} to {where}", at=self.context.clock.now(),
                              certificate_id=cert_id, node=self.context.node,
                              details={"format": fmt, "encryption": encryption if fmt == "pfx" else ""})
        except StoreError as exc:
            # the export is done; on a full or read-only store disk it still succeeds
            log.warning("%s: exported, but the audit event could not be stored: %s", cert_id, exc)
            return Exported(None if out is not None else data, audited=False)
        return Exported(None if out is not None else data, audited=True)

    def clear_rejection(self, cert_id: str) -> None:
        """An operator's --force: allow automatic retries again after a permanent refusal."""
        with self.context.store.session() as session:
            certificates.clear_rejection(session, cert_id)

    def revoke(self, cert_id: str, reason: str) -> str:
        """Revoke the current revision at its CA; returns the serial."""
        bundle = self.bundle(cert_id)
        with self.context.store.session() as session:
            issuer_name = certificates.get(session, cert_id).issuer
        issuer = self.context.issuer(issuer_name)
        if not isinstance(issuer, SupportsRevoke):
            raise ConfigError(f"issuer {issuer_name!r} cannot revoke certificates")
        issuer.revoke(bundle.cert_pem, bundle.key_pem, REVOCATION_REASONS[reason])
        with self.context.store.session() as session:
            row = revisions.current(session, cert_id)
            assert row is not None
            revisions.mark_revoked(session, row.id, at=self.context.clock.now(), reason=reason)
            events.record(session, "revoked", f"revision {row.number} revoked ({reason})",
                          at=self.context.clock.now(), certificate_id=cert_id, revision_id=row.id,
                          node=self.context.node)
        return bundle.serial

    def remove(self, cert_id: str) -> None:
        """Stop managing ``cert_id``: its revisions and keys are deleted; an event stays."""
        with self.context.store.session() as session:
            certificates.delete(session, cert_id)
            events.record(session, "removed", f"certificate {cert_id} removed from management",
                          at=self.context.clock.now(), certificate_id=cert_id)

    def reseal(self, sealer: Sealer) -> int:
        """Re-encrypt every stored key and secret under ``sealer``'s newest key, in one
        transaction (``certkeeper keys rotate``); returns how many values were re-encrypted."""
        store = self.context.store
        with store.session() as session:
            count = revisions.reseal_keys(session, sealer) + secrets.reseal(session, sealer)
            events.record(session, "keys_rotated", f"{count} secrets re-encrypted under a new key",
                          at=self.context.clock.now())
        store.sealer = sealer
        return count

    def prune(self, now: datetime, *, dry_run: bool = False) -> list[PrunedRevision]:
        """Delete revisions past ``[store] revision_retention_days``.

        See :func:`certkeeper.store.revisions.prunable` for what is always kept. The deletion and
        an event per certificate (so ``show`` says where a revision went) commit together.
        """
        days = self.context.config.settings.store.revision_retention_days
        if not days:
            return []
        with self.context.store.session() as session:
            found = revisions.prunable(session, now - timedelta(days=days))
            pruned = [PrunedRevision(cert_id, number) for cert_id, number, _ in found]
            if dry_run or not found:
                return pruned
            by_cert: dict[str, list[int]] = {}
            for item in pruned:
                by_cert.setdefault(item.certificate_id, []).append(item.number)
            revisions.delete_many(session, [row_id for _, _, row_id in found])
            for cert_id, numbers in by_cert.items():
                listed = ", ".join(str(n) for n in numbers)
                events.record(session, "pruned", f"deleted revisions {listed}: expired or failed more than "
                              f"{days:g} days ago", at=now, certificate_id=cert_id, details={"revisions": numbers})
        log.info("pruned %d old revisions", len(found))
        return pruned
