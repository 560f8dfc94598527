"""The repository: every read and write of the store goes through here.

It seals private keys and secrets on the way in and opens them on the way out; nothing else in
certkeeper sees a Fernet token or a SQL statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from certkeeper.clock import Clock
from certkeeper.errors import NotFound
from certkeeper.model import RevisionState
from certkeeper.sealing import Sealer
from certkeeper.store.schema import (
    CertificateRow,
    DeploymentRow,
    EventRow,
    IssuerStateRow,
    LeaseRow,
    NodeRow,
    OutboxRow,
    RevisionRow,
    SecretRow,
)


class DbStateStore:
    """A plugin's :class:`~certkeeper.plugins.StateStore` backed by ``issuer_state``, sealed."""

    def __init__(self, repository: Repository, namespace: str) -> None:
        self._repository = repository
        self._namespace = namespace

    def get(self, key: str) -> bytes | None:
        with self._repository.session() as session:
            row = session.get(IssuerStateRow, (self._namespace, key))
            return None if row is None else self._repository.sealer.open(row.value_encrypted)

    def put(self, key: str, value: bytes) -> None:
        sealed = self._repository.sealer.seal(value)
        now = self._repository.clock.now()
        with self._repository.session() as session:
            row = session.get(IssuerStateRow, (self._namespace, key))
            if row is None:
                session.add(IssuerStateRow(issuer=self._namespace, key=key, value_encrypted=sealed, updated_at=now))
            else:
                row.value_encrypted = sealed
                row.updated_at = now

    def delete(self, key: str) -> None:
        with self._repository.session() as session:
            session.execute(
                delete(IssuerStateRow).where(IssuerStateRow.issuer == self._namespace, IssuerStateRow.key == key)
            )

    def keys(self, prefix: str = "") -> list[str]:
        with self._repository.session() as session:
            rows = session.scalars(
                select(IssuerStateRow.key).where(
                    IssuerStateRow.issuer == self._namespace, IssuerStateRow.key.startswith(prefix, autoescape=True)
                )
            )
            return sorted(rows)


@dataclass(frozen=True)
class Overview:
    """One line of ``certkeeper list``: the spec and its current revision's facts (no key)."""

    id: str
    names: tuple[str, ...]
    issuer: str
    key_type: str
    enabled: bool
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


class Repository:
    def __init__(self, sessions: sessionmaker[Session], sealer: Sealer, clock: Clock) -> None:
        self.sessions = sessions
        self.sealer = sealer
        self.clock = clock

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    # -- plugin state and named secrets -----------------------------------------------------------

    def state_store(self, namespace: str) -> DbStateStore:
        return DbStateStore(self, namespace)

    def set_secret(self, name: str, value: str) -> None:
        sealed = self.sealer.seal(value.encode())
        now = self.clock.now()
        with self.session() as session:
            row = session.get(SecretRow, name)
            if row is None:
                session.add(SecretRow(name=name, value_encrypted=sealed, updated_at=now))
            else:
                row.value_encrypted, row.updated_at = sealed, now

    def get_secret(self, name: str) -> str:
        with self.session() as session:
            row = session.get(SecretRow, name)
            if row is None:
                raise NotFound(f"no stored secret named {name!r} (certkeeper secret set {name})")
            return self.sealer.open(row.value_encrypted).decode()

    def delete_secret(self, name: str) -> bool:
        with self.session() as session:
            result: CursorResult[Any] = session.execute(delete(SecretRow).where(SecretRow.name == name))  # type: ignore[assignment]
            return bool(result.rowcount)

    def secret_names(self) -> list[tuple[str, datetime]]:
        with self.session() as session:
            return [(row.name, row.updated_at) for row in session.scalars(select(SecretRow).order_by(SecretRow.name))]

    # -- certificates -------------------------------------------------------------------------------

    def get_certificate(self, session: Session, cert_id: str) -> CertificateRow:
        row = session.get(CertificateRow, cert_id)
        if row is None:
            raise NotFound(f"no certificate with id {cert_id!r} (certkeeper list shows them)")
        return row

    def find_certificate(self, cert_id: str) -> CertificateRow | None:
        with self.session() as session:
            return session.get(CertificateRow, cert_id)

    def certificate_ids(self) -> list[str]:
        with self.session() as session:
            return list(session.scalars(select(CertificateRow.id).order_by(CertificateRow.id)))

    def upsert_certificate(
        self,
        cert_id: str,
        *,
        names: Sequence[str],
        issuer: str,
        key_type: str,
        source: str,
        renew_before_seconds: int | None = None,
        bindings: list[dict[str, Any]] | None = None,
    ) -> None:
        for attempt in (1, 2):
            try:
                self._upsert_certificate(
                    cert_id, names=names, issuer=issuer, key_type=key_type, source=source,
                    renew_before_seconds=renew_before_seconds, bindings=bindings,
                )
                return
            except IntegrityError:
                # several CAS nodes sync the same config at once: another inserted the row first,
                # so the second attempt updates it
                if attempt == 2:
                    raise

    def _upsert_certificate(
        self,
        cert_id: str,
        *,
        names: Sequence[str],
        issuer: str,
        key_type: str,
        source: str,
        renew_before_seconds: int | None,
        bindings: list[dict[str, Any]] | None,
    ) -> None:
        now = self.clock.now()
        with self.session() as session:
            row = session.get(CertificateRow, cert_id)
            if row is None:
                session.add(
                    CertificateRow(
                        id=cert_id, names=list(names), issuer=issuer, key_type=key_type, source=source,
                        renew_before_seconds=renew_before_seconds, bindings=bindings or [], options={},
                        enabled=True, created_at=now, updated_at=now, failure_count=0, rejected=False,
                    )
                )
                return
            changed = (list(row.names), row.issuer, row.key_type) != (list(names), issuer, key_type)
            touched = changed or row.renew_before_seconds != renew_before_seconds or (
                bindings is not None and list(row.bindings or []) != bindings
            )
            if not touched and not (source == "config" and row.source != "config"):
                return  # nothing new: keep updated_at, which the due-candidates query relies on
            row.names, row.issuer, row.key_type = list(names), issuer, key_type
            row.renew_before_seconds = renew_before_seconds
            if bindings is not None:
                row.bindings = bindings
            if source == "config" or row.source != "config":
                row.source = source
            row.updated_at = now
            if changed:
                # a new spec deserves a fresh start (cert-manager: a spec change retries at once)
                row.rejected = False
                row.next_attempt_at = None

    def delete_certificate(self, cert_id: str) -> None:
        with self.session() as session:
            session.delete(self.get_certificate(session, cert_id))

    def overview(self, cert_ids: Sequence[str] | None = None) -> list[Overview]:
        """The list view in two queries, whatever the number of certificates."""
        with self.session() as session:
            latest = (
                select(RevisionRow.certificate_id, func.max(RevisionRow.number).label("number"))
                .where(RevisionRow.state == RevisionState.ISSUED.value)
                .group_by(RevisionRow.certificate_id)
                .subquery()
            )
            rev_cols = (
                RevisionRow.number, RevisionRow.names, RevisionRow.key_type, RevisionRow.issuer,
                RevisionRow.serial, RevisionRow.fingerprint_sha256, RevisionRow.not_before,
                RevisionRow.not_after, RevisionRow.renewal_time,
            )
            cert_cols = (
                CertificateRow.id, CertificateRow.names, CertificateRow.issuer, CertificateRow.key_type,
                CertificateRow.enabled, CertificateRow.failure_count, CertificateRow.last_failure_at,
                CertificateRow.last_failure_message, CertificateRow.rejected, CertificateRow.next_attempt_at,
                CertificateRow.renew_before_seconds,
            )
            # plain column rows, not ORM entities: 10,000 certificates list in a fraction of the time
            query = (
                select(*cert_cols, *rev_cols)
                .outerjoin(latest, latest.c.certificate_id == CertificateRow.id)
                .outerjoin(
                    RevisionRow,
                    (RevisionRow.certificate_id == CertificateRow.id) & (RevisionRow.number == latest.c.number),
                )
                .order_by(CertificateRow.id)
            )
            if cert_ids is not None:
                query = query.where(CertificateRow.id.in_(list(cert_ids)))
            pending_ids = set(
                session.connection().execute(
                    select(RevisionRow.certificate_id).where(RevisionRow.state == RevisionState.PENDING.value)
                ).scalars()
            )
            failing: dict[str, tuple[tuple[str, ...], str, str]] = {}
            if session.scalar(select(func.count(CertificateRow.id)).where(CertificateRow.failure_count > 0)):
                latest_failed = (
                    select(RevisionRow.certificate_id, func.max(RevisionRow.number).label("number"))
                    .where(RevisionRow.state == RevisionState.FAILED.value)
                    .group_by(RevisionRow.certificate_id)
                    .subquery()
                )
                failed_rows = session.execute(
                    select(RevisionRow.certificate_id, RevisionRow.names, RevisionRow.key_type, RevisionRow.issuer)
                    .join(
                        latest_failed,
                        (latest_failed.c.certificate_id == RevisionRow.certificate_id)
                        & (latest_failed.c.number == RevisionRow.number),
                    )
                )
                failing = {cid: (tuple(n), kt, iss) for cid, n, kt, iss in failed_rows}
            result = []
            for (cid, cnames, cissuer, ckey_type, enabled, failure_count, last_failure_at, last_failure_message,
                 rejected, next_attempt_at, renew_before, number, names, key_type, issuer, serial, fp, nb, na,
                 rt) in session.connection().execute(query):
                result.append(
                    Overview(
                        id=cid, names=tuple(cnames), issuer=cissuer, key_type=ckey_type,
                        enabled=enabled, failure_count=failure_count,
                        last_failure_at=last_failure_at, last_failure_message=last_failure_message,
                        rejected=rejected, next_attempt_at=next_attempt_at,
                        renew_before_seconds=renew_before, pending=cid in pending_ids,
                        revision=number, revision_names=tuple(names) if names is not None else None,
                        revision_key_type=key_type, revision_issuer=issuer, serial=serial, fingerprint=fp,
                        not_before=nb, not_after=na, renewal_time=rt,
                        last_failure_spec=failing.get(cid) if failure_count else None,
                    )
                )
            return result

    def ids_with_bindings(self) -> list[str]:
        """Certificates that have at least one binding (the deploy pass skips the others)."""
        with self.session() as session:
            rows = session.connection().execute(
                select(CertificateRow.id, CertificateRow.bindings).order_by(CertificateRow.id)
            )
            return [cert_id for cert_id, bindings in rows if bindings]

    def due_candidates(self, now: datetime) -> list[str]:
        """Ids that may need issuing now; everything else is certainly not due (one indexed query).

        A candidate: never issued, a request pending, failing or refused, renewal time reached,
        expired, or its spec changed after its current revision was requested. The full chain of
        checks (lifecycle.checks) then decides for these few.
        """
        latest = (
            select(RevisionRow.certificate_id, func.max(RevisionRow.number).label("number"))
            .where(RevisionRow.state == RevisionState.ISSUED.value)
            .group_by(RevisionRow.certificate_id)
            .subquery()
        )
        query = (
            select(CertificateRow.id)
            .outerjoin(latest, latest.c.certificate_id == CertificateRow.id)
            .outerjoin(
                RevisionRow,
                (RevisionRow.certificate_id == CertificateRow.id) & (RevisionRow.number == latest.c.number),
            )
            .where(
                or_(
                    RevisionRow.id.is_(None),
                    RevisionRow.renewal_time.is_(None),
                    RevisionRow.renewal_time <= now,
                    RevisionRow.not_after <= now,
                    CertificateRow.failure_count > 0,
                    CertificateRow.rejected.is_(True),
                    CertificateRow.updated_at > RevisionRow.requested_at,
                    CertificateRow.id.in_(
                        select(RevisionRow.certificate_id).where(RevisionRow.state == RevisionState.PENDING.value)
                    ),
                )
            )
        )
        with self.session() as session:
            return list(session.connection().execute(query).scalars())

    # -- revisions ----------------------------------------------------------------------------------

    def current_revision(self, session: Session, cert_id: str) -> RevisionRow | None:
        return session.scalars(
            select(RevisionRow)
            .where(RevisionRow.certificate_id == cert_id, RevisionRow.state == RevisionState.ISSUED.value)
            .order_by(RevisionRow.number.desc())
            .limit(1)
        ).first()

    def pending_revision(self, session: Session, cert_id: str) -> RevisionRow | None:
        return session.scalars(
            select(RevisionRow)
            .where(RevisionRow.certificate_id == cert_id, RevisionRow.state == RevisionState.PENDING.value)
            .order_by(RevisionRow.number.desc())
            .limit(1)
        ).first()

    def revision(self, session: Session, revision_id: int) -> RevisionRow:
        row = session.get(RevisionRow, revision_id)
        if row is None:
            raise NotFound(f"no revision {revision_id}")
        return row

    def next_revision_number(self, session: Session, cert_id: str) -> int:
        current = session.scalar(select(func.max(RevisionRow.number)).where(RevisionRow.certificate_id == cert_id))
        return (current or 0) + 1

    def prunable_revisions(self, cutoff: datetime) -> list[tuple[str, int, int]]:
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
        current = (
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
            .where(RevisionRow.id.not_in(current), RevisionRow.id.not_in(served))
            .order_by(RevisionRow.certificate_id, RevisionRow.number)
        )
        with self.session() as session:
            return [(row[0], row[1], row[2]) for row in session.execute(query)]

    def delete_revisions(self, session: Session, revision_ids: Sequence[int]) -> None:
        """Delete revisions (sealed keys included) and their deployment rows; events stay."""
        session.execute(delete(DeploymentRow).where(DeploymentRow.revision_id.in_(revision_ids)))
        session.execute(delete(RevisionRow).where(RevisionRow.id.in_(revision_ids)))

    def open_key(self, revision: RevisionRow) -> bytes:
        return self.sealer.open(revision.key_encrypted)

    def seal(self, data: bytes) -> bytes:
        return self.sealer.seal(data)

    # -- audit trail --------------------------------------------------------------------------------

    def record_event(
        self,
        kind: str,
        message: str,
        *,
        certificate_id: str | None = None,
        revision_id: int | None = None,
        node: str = "",
        details: dict[str, Any] | None = None,
        session: Session | None = None,
    ) -> None:
        row = EventRow(
            at=self.clock.now(), kind=kind, certificate_id=certificate_id, revision_id=revision_id,
            node=node, message=message, details=details or {},
        )
        if session is not None:
            session.add(row)
            return
        with self.session() as own:
            own.add(row)

    def events(self, certificate_id: str | None = None, limit: int = 50) -> list[EventRow]:
        with self.session() as session:
            query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
            if certificate_id is not None:
                query = query.where(EventRow.certificate_id == certificate_id)
            return list(session.scalars(query))

    # -- leases ---------------------------------------------------------------------------------------

    def acquire_certificate_lease(self, cert_id: str, holder: str, ttl: timedelta) -> bool:
        """Take (or extend) the row lease on a certificate; False if someone else holds it."""
        now = self.clock.now()
        with self.session() as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(CertificateRow)
                .where(
                    CertificateRow.id == cert_id,
                    or_(
                        CertificateRow.lease_holder.is_(None),
                        CertificateRow.lease_holder == holder,
                        CertificateRow.lease_expires_at < now,
                    ),
                )
                .values(lease_holder=holder, lease_expires_at=now + ttl)
            )
            if result.rowcount:
                return True
            self.get_certificate(session, cert_id)  # NotFound for an unknown id, not "someone holds it"
            return False

    def extend_certificate_leases(self, cert_ids: Sequence[str], holder: str, ttl: timedelta) -> int:
        """Push back the expiry of the leases ``holder`` still holds on ``cert_ids`` (a live daemon's
        heartbeat, for the certificates it is issuing right now)."""
        if not cert_ids:
            return 0
        now = self.clock.now()
        with self.session() as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(CertificateRow)
                .where(CertificateRow.id.in_(list(cert_ids)), CertificateRow.lease_holder == holder,
                       CertificateRow.lease_expires_at >= now)
                .values(lease_expires_at=now + ttl)
            )
            return int(result.rowcount)

    def certificate_lease_holder(self, cert_id: str) -> str | None:
        with self.session() as session:
            return self.get_certificate(session, cert_id).lease_holder

    def take_certificate_lease(self, cert_id: str, dead_holder: str, holder: str, ttl: timedelta) -> bool:
        """Take over a lease from a holder known to be dead (compare-and-set on the holder)."""
        now = self.clock.now()
        with self.session() as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(CertificateRow)
                .where(CertificateRow.id == cert_id, CertificateRow.lease_holder == dead_holder)
                .values(lease_holder=holder, lease_expires_at=now + ttl)
            )
            return bool(result.rowcount)

    def release_certificate_lease(self, cert_id: str, holder: str) -> None:
        with self.session() as session:
            session.execute(
                update(CertificateRow)
                .where(CertificateRow.id == cert_id, CertificateRow.lease_holder == holder)
                .values(lease_holder=None, lease_expires_at=None)
            )

    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew a named lease (e.g. "issuer"); atomic on SQLite and PostgreSQL."""
        now = self.clock.now()
        with self.session() as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(LeaseRow)
                .where(LeaseRow.name == name, or_(LeaseRow.holder == holder, LeaseRow.expires_at < now))
                .values(holder=holder, expires_at=now + ttl)
            )
            if result.rowcount:
                return True
            if session.get(LeaseRow, name) is not None:
                return False
        # the first taker inserts the row; two nodes starting at once race here, and the loser's
        # INSERT violates the primary key: it does not hold the lease (not an error)
        try:
            with self.session() as session:
                session.add(LeaseRow(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
        except IntegrityError:
            return False
        return True

    def release_lease(self, name: str, holder: str) -> None:
        with self.session() as session:
            session.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        with self.session() as session:
            row = session.get(LeaseRow, name)
            return None if row is None else (row.holder, row.expires_at)

    # -- nodes -----------------------------------------------------------------------------------

    def heartbeat(self, name: str, *, host: str, version: str, pid: int) -> None:
        now = self.clock.now()
        with self.session() as session:
            row = session.get(NodeRow, name)
            if row is None:
                session.add(NodeRow(name=name, host=host, version=version, pid=pid, started_at=now, heartbeat_at=now))
            else:
                row.host, row.version, row.pid, row.heartbeat_at = host, version, pid, now

    def nodes(self) -> list[NodeRow]:
        with self.session() as session:
            return list(session.scalars(select(NodeRow).order_by(NodeRow.name)))

    # -- key rotation -------------------------------------------------------------------------------

    def reseal_all(self, sealer: Sealer) -> int:
        """Re-encrypt every sealed value under ``sealer``'s newest key, in one transaction."""
        count = 0
        with self.session() as session:
            for revision in session.scalars(select(RevisionRow)):
                revision.key_encrypted = sealer.reseal(revision.key_encrypted)
                count += 1
            for state in session.scalars(select(IssuerStateRow)):
                state.value_encrypted = sealer.reseal(state.value_encrypted)
                count += 1
            for secret in session.scalars(select(SecretRow)):
                secret.value_encrypted = sealer.reseal(secret.value_encrypted)
                count += 1
        self.sealer = sealer
        return count

    # -- deployments ------------------------------------------------------------------------------

    def deployments(self, cert_id: str | None = None) -> list[DeploymentRow]:
        with self.session() as session:
            query = select(DeploymentRow).order_by(DeploymentRow.certificate_id, DeploymentRow.id)
            if cert_id is not None:
                query = query.where(DeploymentRow.certificate_id == cert_id)
            return list(session.scalars(query))

    def dead_alerts(self) -> int:
        """Alerts given up after a permanent error or too many attempts."""
        with self.session() as session:
            return int(session.scalar(select(func.count(OutboxRow.id)).where(OutboxRow.dead.is_(True))) or 0)

    def pending_alerts(self) -> int:
        with self.session() as session:
            return int(
                session.scalar(
                    select(func.count(OutboxRow.id)).where(OutboxRow.delivered_at.is_(None), OutboxRow.dead.is_(False))
                )
                or 0
            )
