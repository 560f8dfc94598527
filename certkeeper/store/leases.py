"""Leases and node heartbeats, the rows CAS nodes coordinate through.

Two kinds of lease: the row lease on a certificate (who is issuing it) and named leases ("issuer",
"daemon:<node>"). Each take is one conditional UPDATE, atomic on SQLite and PostgreSQL. The
policy around them (holders, takeover of dead holders, TTLs) is :mod:`certkeeper.cluster`'s.
Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session

from certkeeper.store.certificates import get as get_certificate
from certkeeper.store.schema import CertificateRow, LeaseRow, NodeRow


def _count(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


# -- the row lease on a certificate ---------------------------------------------------------------


def take_certificate(session: Session, cert_id: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take (or extend) the lease on a certificate; False if someone else holds it."""
    taken = _count(session.execute(
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
    ))
    if not taken:
        get_certificate(session, cert_id)  # NotFound for an unknown id, not "someone holds it"
    return bool(taken)


def take_certificate_from(
    session: Session, cert_id: str, dead_holder: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take over a lease from a holder known to be dead (compare-and-set on the holder)."""
    return bool(_count(session.execute(
        update(CertificateRow)
        .where(CertificateRow.id == cert_id, CertificateRow.lease_holder == dead_holder)
        .values(lease_holder=holder, lease_expires_at=now + ttl)
    )))


def certificate_holder(session: Session, cert_id: str) -> str | None:
    return get_certificate(session, cert_id).lease_holder


def extend_certificates(session: Session, cert_ids: Sequence[str], holder: str, now: datetime, ttl: timedelta) -> int:
    """Push back the expiry of the unexpired leases ``holder`` holds on ``cert_ids``."""
    if not cert_ids:
        return 0
    return _count(session.execute(
        update(CertificateRow)
        .where(CertificateRow.id.in_(list(cert_ids)), CertificateRow.lease_holder == holder,
               CertificateRow.lease_expires_at >= now)
        .values(lease_expires_at=now + ttl)
    ))


def release_certificate(session: Session, cert_id: str, holder: str) -> None:
    session.execute(
        update(CertificateRow)
        .where(CertificateRow.id == cert_id, CertificateRow.lease_holder == holder)
        .values(lease_holder=None, lease_expires_at=None)
    )


# -- named leases ----------------------------------------------------------------------------------


def take(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the named lease; False when another holder's lease has not expired.

    The first taker inserts the row: two nodes starting at once race there, and the loser's
    commit raises StoreConflict (it does not hold the lease).
    """
    taken = _count(session.execute(
        update(LeaseRow)
        .where(LeaseRow.name == name, or_(LeaseRow.holder == holder, LeaseRow.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    ))
    if taken:
        return True
    if session.get(LeaseRow, name) is not None:
        return False
    session.add(LeaseRow(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
    session.flush()
    return True


def release(session: Session, name: str, holder: str) -> None:
    session.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))


def holder(session: Session, name: str) -> tuple[str, datetime] | None:
    """(holder, expires_at) of the named lease, or None."""
    row = session.get(LeaseRow, name)
    return None if row is None else (row.holder, row.expires_at)


# -- nodes -----------------------------------------------------------------------------------------


def beat(session: Session, name: str, *, host: str, version: str, pid: int, now: datetime) -> None:
    """Record that node ``name`` is alive now."""
    row = session.get(NodeRow, name)
    if row is None:
        session.add(NodeRow(name=name, host=host, version=version, pid=pid, started_at=now, heartbeat_at=now))
    else:
        row.host, row.version, row.pid, row.heartbeat_at = host, version, pid, now


def nodes(session: Session) -> list[NodeRow]:
    return list(session.scalars(select(NodeRow).order_by(NodeRow.name)))


def heartbeats(session: Session, names: Sequence[str]) -> dict[str, datetime]:
    """node name -> its last heartbeat, for the nodes that ever sent one."""
    if not names:
        return {}
    rows = session.execute(select(NodeRow.name, NodeRow.heartbeat_at).where(NodeRow.name.in_(list(names))))
    return {name: at for name, at in rows}
