"""The revisions aggregate: one issuance attempt each (pending, issued or failed), with its sealed key.

Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`). Private
keys go in and come out through the :class:`~certkeeper.sealing.Sealer` passed in; nothing
outside the store sees a Fernet token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, CursorResult, Subquery, delete, func, insert, or_, select, update

from certkeeper.errors import NotFound
from certkeeper.model import Bundle, RevisionState
from certkeeper.store.tables import deployments as deployment_table
from certkeeper.store.tables import revisions as revision_table

if TYPE_CHECKING:
    from certkeeper.sealing import Sealer

R = revision_table.c
D = deployment_table.c


@dataclass(frozen=True)
class Revision:
    """One row of the ``revisions`` table (the key stays sealed: see :func:`open_key`)."""

    id: int
    certificate_id: str
    number: int
    state: str
    origin: str
    issuer: str
    names: list[str]
    key_type: str
    key_encrypted: bytes
    csr_pem: str | None
    cert_pem: str | None
    chain_pem: str | None
    serial: str | None
    fingerprint_sha256: str | None
    thumbprint_sha1: str | None
    not_before: datetime | None
    not_after: datetime | None
    renewal_time: datetime | None
    ari_window_start: datetime | None
    ari_window_end: datetime | None
    ari_explanation_url: str | None
    ari_next_check_at: datetime | None
    checkpoint: dict[str, Any] | None
    replaces_revision_id: int | None
    error: str | None
    requested_at: datetime
    issued_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str | None

    def __repr__(self) -> str:  # never the sealed key or the PEMs
        return f"Revision({self.certificate_id!r}, number={self.number}, id={self.id}, state={self.state!r})"


def _one(session: Connection, query: Any) -> Revision | None:
    row = session.execute(query).first()
    return None if row is None else Revision(**row._mapping)


def current(session: Connection, cert_id: str) -> Revision | None:
    """The newest issued revision: what is (or should be) served."""
    return _one(session, select(revision_table)
                .where(R.certificate_id == cert_id, R.state == RevisionState.ISSUED.value)
                .order_by(R.number.desc())
                .limit(1))


def pending(session: Connection, cert_id: str) -> Revision | None:
    """The request in flight (an ACME order placed, an AD CS request awaiting approval)."""
    return _one(session, select(revision_table)
                .where(R.certificate_id == cert_id, R.state == RevisionState.PENDING.value)
                .order_by(R.number.desc())
                .limit(1))


def get(session: Connection, revision_id: int) -> Revision:
    row = _one(session, select(revision_table).where(R.id == revision_id))
    if row is None:
        raise NotFound(f"no revision {revision_id}")
    return row


def by_number(session: Connection, cert_id: str, number: int) -> Revision | None:
    return _one(session, select(revision_table).where(R.certificate_id == cert_id, R.number == number))


def numbers(session: Connection, revision_ids: Sequence[int]) -> dict[int, int]:
    """Revision row id -> its number within its certificate."""
    if not revision_ids:
        return {}
    rows = session.execute(select(R.id, R.number).where(R.id.in_(list(revision_ids))))
    return {row_id: number for row_id, number in rows}


def history(session: Connection, cert_id: str) -> list[Revision]:
    """Every stored revision of a certificate, newest first."""
    rows = session.execute(select(revision_table).where(R.certificate_id == cert_id).order_by(R.number.desc()))
    return [Revision(**row._mapping) for row in rows]


def next_number(session: Connection, cert_id: str) -> int:
    latest = session.scalar(select(func.max(R.number)).where(R.certificate_id == cert_id))
    return (latest or 0) + 1


def add_pending(
    session: Connection,
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
) -> Revision:
    """A new request: its key sealed, its number the next one."""
    return _add(session, dict(
        certificate_id=cert_id, number=next_number(session, cert_id), state=RevisionState.PENDING.value,
        origin="issued", issuer=issuer, names=list(names), key_type=key_type, key_encrypted=sealer.seal(key_pem),
        csr_pem=csr_pem.decode(), requested_at=now, replaces_revision_id=replaces_revision_id,
    ))


def add_imported(
    session: Connection,
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
) -> Revision:
    """An issued revision brought in from a file; ``facts`` holds serial, fingerprints, validity
    and renewal_time."""
    return _add(session, dict(
        certificate_id=cert_id, number=next_number(session, cert_id), state=RevisionState.ISSUED.value,
        origin="imported", issuer=issuer, names=list(names), key_type=key_type, key_encrypted=sealer.seal(key_pem),
        cert_pem=cert_pem.decode(), chain_pem=chain_pem.decode(), requested_at=now, issued_at=now, **facts,
    ))


def _add(session: Connection, values: dict[str, Any]) -> Revision:
    key = session.execute(insert(revision_table).values(**values)).inserted_primary_key
    assert key is not None
    return get(session, int(key[0]))


def latest_numbers(state: RevisionState) -> Subquery:
    """A subquery of (certificate_id, number): each certificate's newest revision in ``state``
    (join on both columns to read that revision)."""
    return (
        select(R.certificate_id, func.max(R.number).label("number"))
        .where(R.state == state.value)
        .group_by(R.certificate_id)
        .subquery()
    )


def _set(session: Connection, revision_id: int, **values: Any) -> None:
    session.execute(update(revision_table).where(R.id == revision_id).values(**values))


def _settle(session: Connection, revision_id: int, **values: Any) -> bool:
    """Update a revision only while it is still pending; False when another process (a node that
    took over after this one paused past its lease) already settled it."""
    result = session.execute(
        update(revision_table)
        .where(R.id == revision_id, R.state == RevisionState.PENDING.value)
        .values(**values)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def mark_issued(
    session: Connection, revision_id: int, *, cert_pem: bytes, chain_pem: bytes, facts: Mapping[str, Any],
    now: datetime,
) -> bool:
    """A pending revision became a certificate; ``facts`` as for :func:`add_imported`.

    Returns False, changing nothing, when the revision is no longer pending."""
    return _settle(session, revision_id, state=RevisionState.ISSUED.value, cert_pem=cert_pem.decode(),
                   chain_pem=chain_pem.decode(), issued_at=now, checkpoint=None, error=None, **facts)


def save_checkpoint(session: Connection, revision_id: int, checkpoint: Mapping[str, Any]) -> None:
    """What the issuer saved so far (an ACME order URL, an AD CS request id); only while the
    revision is pending (a process that paused past its lease does not touch a settled one)."""
    _settle(session, revision_id, checkpoint=dict(checkpoint))


def fail(session: Connection, revision_id: int, error: str, *, keep_pending: bool = False) -> bool:
    """The attempt failed with ``error``; ``keep_pending`` keeps the request to be resumed (the CA
    accepted it and a retry can go on from its checkpoint).

    Returns False, changing nothing, when the revision is no longer pending."""
    state = RevisionState.PENDING if keep_pending else RevisionState.FAILED
    return _settle(session, revision_id, state=state.value, error=error)


def set_renewal_info(
    session: Connection, revision_id: int, *, window_start: datetime, window_end: datetime,
    explanation_url: str | None, next_check_at: datetime | None, renewal_time: datetime | None,
) -> None:
    """The CA's ARI window (RFC 9773) and, when it changed, the renewal time drawn from it."""
    values: dict[str, Any] = {"ari_window_start": window_start, "ari_window_end": window_end,
                              "ari_explanation_url": explanation_url, "ari_next_check_at": next_check_at}
    if renewal_time is not None:
        values["renewal_time"] = renewal_time
    _set(session, revision_id, **values)


def mark_revoked(session: Connection, revision_id: int, *, at: datetime, reason: str) -> None:
    _set(session, revision_id, revoked_at=at, revocation_reason=reason)


def open_key(sealer: Sealer, row: Revision) -> bytes:
    return sealer.open(row.key_encrypted)


def bundle(sealer: Sealer, row: Revision) -> Bundle:
    """An issued revision with its key, as binders and exports take it."""
    if row.cert_pem is None or row.not_before is None or row.not_after is None:
        raise NotFound(f"revision {row.number} of {row.certificate_id!r} holds no certificate")
    return Bundle(
        certificate_id=row.certificate_id, cert_pem=row.cert_pem.encode(), chain_pem=(row.chain_pem or "").encode(),
        key_pem=open_key(sealer, row), fingerprint=row.fingerprint_sha256 or "", serial=row.serial or "",
        names=tuple(row.names), not_before=row.not_before, not_after=row.not_after, revision=row.number,
    )


def prunable(session: Connection, cutoff: datetime) -> list[tuple[str, int, int]]:
    """Revisions no longer worth their encrypted key: (certificate id, number, row id).

    Those whose certificate expired before ``cutoff`` and failed requests made before it. Kept
    always: each certificate's current (newest issued) revision, every pending one, and every
    revision that is the latest deployment of some binding on some node (what that node last
    served, which ``status --nodes`` shows).
    """
    latest_deployments = (
        select(func.max(D.id))
        .group_by(D.certificate_id, D.binding, D.node)
        .scalar_subquery()
    )
    served = select(D.revision_id).where(D.id.in_(latest_deployments))
    newer = revision_table.alias("newer")
    newest_issued = (
        select(R.id)
        .where(R.state == RevisionState.ISSUED.value)
        .where(
            R.number
            == select(func.max(newer.c.number))
            .where(newer.c.certificate_id == R.certificate_id, newer.c.state == RevisionState.ISSUED.value)
            .scalar_subquery()
        )
    )
    query = (
        select(R.certificate_id, R.number, R.id)
        .where(
            or_(
                (R.state == RevisionState.ISSUED.value) & (R.not_after < cutoff),
                (R.state == RevisionState.FAILED.value) & (R.requested_at < cutoff),
            )
        )
        .where(R.id.not_in(newest_issued), R.id.not_in(served))
        .order_by(R.certificate_id, R.number)
    )
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


def delete_many(session: Connection, revision_ids: Sequence[int]) -> None:
    """Delete revisions (sealed keys included) and their deployment rows; events stay."""
    session.execute(delete(deployment_table).where(D.revision_id.in_(revision_ids)))
    session.execute(delete(revision_table).where(R.id.in_(revision_ids)))


def reseal_keys(session: Connection, sealer: Sealer) -> int:
    """Re-encrypt every revision's key under ``sealer``'s newest key."""
    rows = session.execute(select(R.id, R.key_encrypted)).all()
    for revision_id, sealed in rows:
        _set(session, revision_id, key_encrypted=sealer.reseal(sealed))
    return len(rows)
