"""The revisions aggregate: one issuance attempt each (pending, issued or failed), with its sealed key.

Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`). Private
keys go in and come out through the :class:`~certkeeper.sealing.Sealer` passed in; nothing
outside the store sees a Fernet token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, aliased

from certkeeper.errors import NotFound
from certkeeper.model import Bundle, RevisionState
from certkeeper.sealing import Sealer
from certkeeper.store.schema import DeploymentRow, RevisionRow


def _newest(session: Session, cert_id: str, state: RevisionState) -> RevisionRow | None:
    return session.scalars(
        select(RevisionRow)
        .where(RevisionRow.certificate_id == cert_id, RevisionRow.state == state.value)
        .order_by(RevisionRow.number.desc())
        .limit(1)
    ).first()


def current(session: Session, cert_id: str) -> RevisionRow | None:
    """The newest issued revision: what is (or should be) served."""
    return _newest(session, cert_id, RevisionState.ISSUED)


def pending(session: Session, cert_id: str) -> RevisionRow | None:
    """The request in flight (an ACME order placed, an AD CS request awaiting approval)."""
    return _newest(session, cert_id, RevisionState.PENDING)


def get(session: Session, revision_id: int) -> RevisionRow:
    row = session.get(RevisionRow, revision_id)
    if row is None:
        raise NotFound(f"no revision {revision_id}")
    return row


def by_number(session: Session, cert_id: str, number: int) -> RevisionRow | None:
    return session.scalars(
        select(RevisionRow).where(RevisionRow.certificate_id == cert_id, RevisionRow.number == number)
    ).first()


def numbers(session: Session, revision_ids: Sequence[int]) -> dict[int, int]:
    """Revision row id -> its number within its certificate."""
    if not revision_ids:
        return {}
    rows = session.execute(select(RevisionRow.id, RevisionRow.number).where(RevisionRow.id.in_(list(revision_ids))))
    return {row_id: number for row_id, number in rows}


def history(session: Session, cert_id: str) -> list[RevisionRow]:
    """Every stored revision of a certificate, newest first."""
    return list(
        session.scalars(
            select(RevisionRow).where(RevisionRow.certificate_id == cert_id).order_by(RevisionRow.number.desc())
        )
    )


def next_number(session: Session, cert_id: str) -> int:
    latest = session.scalar(select(func.max(RevisionRow.number)).where(RevisionRow.certificate_id == cert_id))
    return (latest or 0) + 1


def add_pending(
    session: Session,
    sealer: Sealer,
    cert_id: str,
    *,
    issuer: str,
    names: Sequence[str],
    key_type: str,
    key_pem: bytes,
    csr_pem: bytes,
    now: datetime,
    replaces_revision_id: int | None,
) -> RevisionRow:
    """A new request: its key sealed, its number the next one. Flushed, so ``id`` is set."""
    row = RevisionRow(
        certificate_id=cert_id, number=next_number(session, cert_id), state=RevisionState.PENDING.value,
        origin="issued", issuer=issuer, names=list(names), key_type=key_type, key_encrypted=sealer.seal(key_pem),
        csr_pem=csr_pem.decode(), requested_at=now, replaces_revision_id=replaces_revision_id,
    )
    session.add(row)
    session.flush()
    return row


def add_imported(
    session: Session,
    sealer: Sealer,
    cert_id: str,
    *,
    issuer: str,
    names: Sequence[str],
    key_type: str,
    key_pem: bytes,
    cert_pem: bytes,
    chain_pem: bytes,
    facts: Mapping[str, Any],
    now: datetime,
) -> RevisionRow:
    """An issued revision brought in from a file; ``facts`` holds serial, fingerprints, validity
    and renewal_time."""
    row = RevisionRow(
        certificate_id=cert_id, number=next_number(session, cert_id), state=RevisionState.ISSUED.value,
        origin="imported", issuer=issuer, names=list(names), key_type=key_type, key_encrypted=sealer.seal(key_pem),
        cert_pem=cert_pem.decode(), chain_pem=chain_pem.decode(), requested_at=now, issued_at=now, **facts,
    )
    session.add(row)
    session.flush()
    return row


def mark_issued(
    row: RevisionRow, *, cert_pem: bytes, chain_pem: bytes, facts: Mapping[str, Any], now: datetime
) -> None:
    """A pending revision became a certificate; ``facts`` as for :func:`add_imported`."""
    row.state = RevisionState.ISSUED.value
    row.cert_pem, row.chain_pem = cert_pem.decode(), chain_pem.decode()
    for name, value in facts.items():
        setattr(row, name, value)
    row.issued_at = now
    row.checkpoint = None
    row.error = None


def open_key(sealer: Sealer, row: RevisionRow) -> bytes:
    return sealer.open(row.key_encrypted)


def bundle(sealer: Sealer, row: RevisionRow) -> Bundle:
    """An issued revision with its key, as binders and exports take it."""
    if row.cert_pem is None or row.not_before is None or row.not_after is None:
        raise NotFound(f"revision {row.number} of {row.certificate_id!r} holds no certificate")
    return Bundle(
        certificate_id=row.certificate_id, cert_pem=row.cert_pem.encode(), chain_pem=(row.chain_pem or "").encode(),
        key_pem=open_key(sealer, row), fingerprint=row.fingerprint_sha256 or "", serial=row.serial or "",
        names=tuple(row.names), not_before=row.not_before, not_after=row.not_after, revision=row.number,
    )


def prunable(session: Session, cutoff: datetime) -> list[tuple[str, int, int]]:
    """Revisions no longer worth their encrypted key: (certificate id, number, row id).

    Those whose certificate expired before ``cutoff`` and failed requests made before it. Kept
    always: each certificate's current (newest issued) revision, every pending one, and every
    revision that is the latest deployment of some binding on some node (what that node last
    served, which ``status --nodes`` shows).
    """
    latest_deployments = (
        select(func.max(DeploymentRow.id))
        .group_by(DeploymentRow.certificate_id, DeploymentRow.binding, DeploymentRow.node)
        .scalar_subquery()
    )
    served = select(DeploymentRow.revision_id).where(DeploymentRow.id.in_(latest_deployments))
    newer = aliased(RevisionRow)
    newest_issued = (
        select(RevisionRow.id)
        .where(RevisionRow.state == RevisionState.ISSUED.value)
        .where(
            RevisionRow.number
            == select(func.max(newer.number))
            .where(newer.certificate_id == RevisionRow.certificate_id, newer.state == RevisionState.ISSUED.value)
            .scalar_subquery()
        )
    )
    query = (
        select(RevisionRow.certificate_id, RevisionRow.number, RevisionRow.id)
        .where(
            or_(
                (RevisionRow.state == RevisionState.ISSUED.value) & (RevisionRow.not_after < cutoff),
                (RevisionRow.state == RevisionState.FAILED.value) & (RevisionRow.requested_at < cutoff),
            )
        )
        .where(RevisionRow.id.not_in(newest_issued), RevisionRow.id.not_in(served))
        .order_by(RevisionRow.certificate_id, RevisionRow.number)
    )
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


def delete_many(session: Session, revision_ids: Sequence[int]) -> None:
    """Delete revisions (sealed keys included) and their deployment rows; events stay."""
    session.execute(delete(DeploymentRow).where(DeploymentRow.revision_id.in_(revision_ids)))
    session.execute(delete(RevisionRow).where(RevisionRow.id.in_(revision_ids)))


def reseal_keys(session: Session, sealer: Sealer) -> int:
    """Re-encrypt every revision's key under ``sealer``'s newest key."""
    count = 0
    for row in session.scalars(select(RevisionRow)):
        row.key_encrypted = sealer.reseal(row.key_encrypted)
        count += 1
    return count
