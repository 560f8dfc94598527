"""The certificates aggregate: specs under management, their retry state and the list view.

Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, func, insert, or_, select, update
from sqlalchemy import delete as sql_delete

from certkeeper.errors import NotFound
from certkeeper.model import RevisionState
from certkeeper.store.revisions import latest_numbers
from certkeeper.store.tables import certificates as certificate_table
from certkeeper.store.tables import deployments as deployment_table
from certkeeper.store.tables import revisions as revision_table

C = certificate_table.c
R = revision_table.c


@dataclass(frozen=True)
class Certificate:
    """One row of the ``certificates`` table: the spec, its retry state and its row lease."""

    id: str
    names: list[str]
    issuer: str
    key_type: str
    renew_before_seconds: int | None
    bindings: list[dict[str, Any]]
    options: dict[str, Any]
    source: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    failure_count: int
    last_failure_at: datetime | None
    last_failure_message: str | None
    rejected: bool
    next_attempt_at: datetime | None
    lease_holder: str | None
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class Overview:
    """One line of ``certkeeper list``: the spec and its current revision's facts (no key)."""

    id: str
    names: tuple[str, ...]
    issuer: str
    key_type: str
    enabled: bool
    source: str
    failure_count: int
    last_failure_at: datetime | None
    last_failure_message: str | None
    rejected: bool
    next_attempt_at: datetime | None
    renew_before_seconds: int | None
    pending: bool
    revision: int | None
    revision_names: tuple[str, ...] | None
    revision_key_type: str | None
    revision_issuer: str | None
    serial: str | None
    fingerprint: str | None
    not_before: datetime | None
    not_after: datetime | None
    renewal_time: datetime | None
    #: (names, key_type, issuer) of the latest failed attempt, while failures are counted
    last_failure_spec: tuple[tuple[str, ...], str, str] | None = None
    #: what the pending request is waiting for, from its checkpoint (an AD CS request id)
    pending_request: str | None = None


def find(session: Connection, cert_id: str) -> Certificate | None:
    row = session.execute(select(certificate_table).where(C.id == cert_id)).first()
    return None if row is None else Certificate(**row._mapping)


def get(session: Connection, cert_id: str) -> Certificate:
    """The certificate; NotFound names the id and how to list the others."""
    found = find(session, cert_id)
    if found is None:
        raise NotFound(f"no certificate with id {cert_id!r} (certkeeper list shows them)")
    return found


def _set(session: Connection, cert_id: str, **values: Any) -> None:
    """Change columns of one certificate; NotFound if there is no such certificate."""
    result = session.execute(update(certificate_table).where(C.id == cert_id).values(**values))
    assert isinstance(result, CursorResult)
    if result.rowcount == 0:
        get(session, cert_id)  # raises NotFound


def ids(session: Connection) -> list[str]:
    return list(session.scalars(select(C.id).order_by(C.id)))


def sources(session: Connection) -> list[tuple[str, str]]:
    """(id, source) of every certificate (no names to decode)."""
    return [(cert_id, source) for cert_id, source in session.execute(select(C.id, C.source))]


def with_names(session: Connection) -> list[tuple[str, tuple[str, ...], str]]:
    """(id, names, source) of every certificate, for the one-certificate-per-names rule."""
    rows = session.execute(select(C.id, C.names, C.source))
    return [(cert_id, tuple(names), source) for cert_id, names, source in rows]


def find_many(session: Connection, cert_ids: Sequence[str]) -> dict[str, Certificate]:
    """The certificates of ``cert_ids`` that exist, by id, in one query."""
    wanted = set(cert_ids)
    query = select(certificate_table)
    if len(wanted) <= 500:  # else every row: no statement with thousands of parameters
        query = query.where(C.id.in_(sorted(wanted)))
    return {row.id: Certificate(**row._mapping) for row in session.execute(query) if row.id in wanted}


def spec_changes(
    row: Certificate | None,
    *,
    names: Sequence[str],
    issuer: str,
    key_type: str,
    source: str,
    renew_before_seconds: int | None = None,
    bindings: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The columns :func:`upsert` writes to give ``row`` this spec; None when nothing would change
    (so a caller holding the rows can skip the write). For a new certificate, its columns."""
    if row is None:
        return {"names": list(names), "issuer": issuer, "key_type": key_type, "source": source,
                "renew_before_seconds": renew_before_seconds, "bindings": bindings or []}
    changed = (list(row.names), row.issuer, row.key_type) != (list(names), issuer, key_type)
    touched = changed or row.renew_before_seconds != renew_before_seconds or (
        bindings is not None and list(row.bindings or []) != bindings
    )
    adopt = source == "config" and row.source != "config"
    if not touched and not adopt:
        return None
    values: dict[str, Any] = {
        "names": list(names), "issuer": issuer, "key_type": key_type, "renew_before_seconds": renew_before_seconds,
    }
    if bindings is not None:
        values["bindings"] = bindings
    if source == "config" or row.source != "config":
        values["source"] = source
    if changed:
        values.update(rejected=False, next_attempt_at=None)
    return values


def upsert(
    session: Connection,
    cert_id: str,
    *,
    names: Sequence[str],
    issuer: str,
    key_type: str,
    source: str,
    now: datetime,
    renew_before_seconds: int | None = None,
    bindings: list[dict[str, Any]] | None = None,
) -> bool:
    """Create the certificate or update its spec; returns whether anything was written.

    Nothing is written when nothing changed (:func:`spec_changes`), so read-only commands never
    write (and work on a full disk), and ``updated_at`` keeps meaning "the spec last changed" (the
    due-candidates query relies on it). A changed spec clears a rejection and the backoff
    (cert-manager: a spec change retries at once). ``bindings`` are compared as stored (JSON).
    Raises StoreConflict when another process inserted the row first: :meth:`Store.run` retries,
    and the second attempt updates.
    """
    row = find(session, cert_id)
    values = spec_changes(row, names=names, issuer=issuer, key_type=key_type, source=source,
                          renew_before_seconds=renew_before_seconds, bindings=bindings)
    if values is None:
        return False
    if row is None:
        session.execute(insert(certificate_table).values(
            id=cert_id, options={}, enabled=True, created_at=now, updated_at=now, failure_count=0, rejected=False,
            **values,
        ))
    else:
        _set(session, cert_id, updated_at=now, **values)
    return True


def mark_source(session: Connection, cert_id: str, source: str) -> None:
    """Change only where a certificate comes from (``config`` -> ``removed-from-config``)."""
    _set(session, cert_id, source=source)


def delete(session: Connection, cert_id: str) -> None:
    """Delete the certificate with its revisions (sealed keys) and deployments; its events stay.

    Explicitly, child rows first, whether or not the database enforces the cascading foreign keys.
    """
    get(session, cert_id)
    session.execute(sql_delete(deployment_table).where(deployment_table.c.certificate_id == cert_id))
    session.execute(sql_delete(revision_table).where(R.certificate_id == cert_id))
    session.execute(sql_delete(certificate_table).where(C.id == cert_id))


def record_failure(
    session: Connection, cert_id: str, *, now: datetime, message: str, retryable: bool, next_attempt_at: datetime
) -> int:
    """Count one more failed attempt; returns the count of consecutive failures."""
    count = get(session, cert_id).failure_count + 1
    _set(session, cert_id, failure_count=count, last_failure_at=now, last_failure_message=message,
         rejected=not retryable, next_attempt_at=next_attempt_at)
    return count


def record_success(session: Connection, cert_id: str) -> bool:
    """Clear the failure streak; returns whether there was one (a "recovered" event is due)."""
    recovered = get(session, cert_id).failure_count > 0
    _set(session, cert_id, failure_count=0, rejected=False, next_attempt_at=None, last_failure_message=None)
    return recovered


def set_next_attempt(session: Connection, cert_id: str, at: datetime | None) -> None:
    _set(session, cert_id, next_attempt_at=at)


def clear_rejection(session: Connection, cert_id: str) -> None:
    """An operator's --force: automatic retries may start again."""
    _set(session, cert_id, rejected=False, next_attempt_at=None)


def overview(session: Connection, cert_ids: Sequence[str] | None = None) -> list[Overview]:
    """The list view in a few queries, whatever the number of certificates.

    Plain column rows: 10,000 certificates list in a fraction of a second.
    """
    latest = latest_numbers(RevisionState.ISSUED)
    rev_cols = (
        R.number, R.names, R.key_type, R.issuer,
        R.serial, R.fingerprint_sha256, R.not_before,
        R.not_after, R.renewal_time,
    )
    cert_cols = (
        C.id, C.names, C.issuer, C.key_type,
        C.enabled, C.source, C.failure_count,
        C.last_failure_at, C.last_failure_message, C.rejected,
        C.next_attempt_at, C.renew_before_seconds,
    )
    query = (
        select(*cert_cols, *rev_cols)
        .outerjoin(latest, latest.c.certificate_id == C.id)
        .outerjoin(
            revision_table,
            (R.certificate_id == C.id) & (R.number == latest.c.number),
        )
        .order_by(C.id)
    )
    if cert_ids is not None:
        query = query.where(C.id.in_(list(cert_ids)))
    pending: dict[str, str | None] = {}
    for cert_id, checkpoint in session.execute(
        select(R.certificate_id, R.checkpoint).where(
            R.state == RevisionState.PENDING.value
        )
    ):
        request_id = (checkpoint or {}).get("request_id") if isinstance(checkpoint, dict) else None
        pending[cert_id] = str(request_id) if request_id is not None else None
    failing: dict[str, tuple[tuple[str, ...], str, str]] = {}
    if session.scalar(select(func.count(C.id)).where(C.failure_count > 0)):
        latest_failed = latest_numbers(RevisionState.FAILED)
        failed_rows = session.execute(
            select(R.certificate_id, R.names, R.key_type, R.issuer).join(
                latest_failed,
                (latest_failed.c.certificate_id == R.certificate_id)
                & (latest_failed.c.number == R.number),
            )
        )
        failing = {cid: (tuple(n), kt, iss) for cid, n, kt, iss in failed_rows}
    result = []
    for (cid, cnames, cissuer, ckey_type, enabled, source, failure_count, last_failure_at, last_failure_message,
         rejected, next_attempt_at, renew_before, number, names, key_type, issuer, serial, fp, nb, na,
         rt) in session.execute(query):
        result.append(
            Overview(
                id=cid, names=tuple(cnames), issuer=cissuer, key_type=ckey_type, enabled=enabled, source=source,
                failure_count=failure_count, last_failure_at=last_failure_at,
                last_failure_message=last_failure_message, rejected=rejected, next_attempt_at=next_attempt_at,
                renew_before_seconds=renew_before, pending=cid in pending,
                revision=number, revision_names=tuple(names) if names is not None else None,
                revision_key_type=key_type, revision_issuer=issuer, serial=serial, fingerprint=fp,
                not_before=nb, not_after=na, renewal_time=rt,
                last_failure_spec=failing.get(cid) if failure_count else None,
                pending_request=pending.get(cid),
            )
        )
    return result


def bindings_of(session: Connection) -> dict[str, list[dict[str, Any]]]:
    """certificate id -> its bindings (as stored), for every certificate that has some."""
    rows = session.execute(select(C.id, C.bindings))
    return {cert_id: list(bindings) for cert_id, bindings in rows if bindings}


def ids_with_bindings(session: Connection) -> list[str]:
    """Certificates that have at least one binding (the deploy pass skips the others)."""
    rows = session.execute(select(C.id, C.bindings).order_by(C.id))
    return [cert_id for cert_id, bindings in rows if bindings]


def due_candidates(session: Connection, now: datetime) -> list[str]:
    """Ids that may need issuing now; everything else is certainly not due (one indexed query).

    A candidate: never issued, a request pending, failing or refused, renewal time reached,
    expired, or its spec changed after its current revision was requested. The full chain of
    checks (:mod:`certkeeper.lifecycle.checks`) then decides for these few.
    """
    latest = latest_numbers(RevisionState.ISSUED)
    query = (
        select(C.id)
        .outerjoin(latest, latest.c.certificate_id == C.id)
        .outerjoin(
            revision_table,
            (R.certificate_id == C.id) & (R.number == latest.c.number),
        )
        .where(
            or_(
                R.id.is_(None),
                R.renewal_time.is_(None),
                R.renewal_time <= now,
                R.not_after <= now,
                C.failure_count > 0,
                C.rejected.is_(True),
                C.updated_at > R.requested_at,
                C.id.in_(
                    select(R.certificate_id).where(R.state == RevisionState.PENDING.value)
                ),
            )
        )
    )
    return list(session.execute(query).scalars())
