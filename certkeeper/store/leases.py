"""Leases and node heartbeats, the rows CAS nodes coordinate through.

Two kinds of lease: the row lease on a certificate (who is issuing it) and named leases ("issuer",
"daemon:<node>"). Each take is one conditional UPDATE, atomic on SQLite and PostgreSQL. The
policy around them (holders, takeover of dead holders, TTLs) is :mod:`certkeeper.cluster`'s.
Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, CursorResult, delete, insert, or_, select, update

from certkeeper.store.certificates import get as get_certificate
from certkeeper.store.tables import certificates as certificate_table
from certkeeper.store.tables import leases as lease_table
from certkeeper.store.tables import nodes as node_table

C = certificate_table.c
L = lease_table.c
N = node_table.c


@dataclass(frozen=True)
class Node:
    """One row of the ``nodes`` table: a daemon that registered against this store."""

    name: str
    host: str
    version: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


def _count(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


# -- the row lease on a certificate ---------------------------------------------------------------


def take_certificate(session: Connection, cert_id: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take (or extend) the lease on a certificate; False if someone else holds it."""
    taken = _count(session.execute(
        update(certificate_table)
        .where(
            C.id == cert_id,
            or_(
                C.lease_holder.is_(None),
                C.lease_holder == holder,
                C.lease_expires_at < now,
            ),
        )
        .values(lease_holder=holder, lease_expires_at=now + ttl)
    ))
    if not taken:
        get_certificate(session, cert_id)  # NotFound for an unknown id, not "someone holds it"
    return bool(taken)


def take_certificate_from(
    session: Connection, cert_id: str, dead_holder: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take over a lease from a holder known to be dead (compare-and-set on the holder)."""
    return bool(_count(session.execute(
        update(certificate_table)
        .where(C.id == cert_id, C.lease_holder == dead_holder)
        .values(lease_holder=holder, lease_expires_at=now + ttl)
    )))


def certificate_holder(session: Connection, cert_id: str) -> str | None:
    return get_certificate(session, cert_id).lease_holder


def extend_certificates(
    session: Connection, cert_ids: Sequence[str], holder: str, now: datetime, ttl: timedelta
) -> int:
    """Push back the expiry of the unexpired leases ``holder`` holds on ``cert_ids``."""
    if not cert_ids:
        return 0
    return _count(session.execute(
        update(certificate_table)
        .where(C.id.in_(list(cert_ids)), C.lease_holder == holder,
               C.lease_expires_at >= now)
        .values(lease_expires_at=now + ttl)
    ))


def release_certificate(session: Connection, cert_id: str, holder: str) -> None:
    session.execute(
        update(certificate_table)
        .where(C.id == cert_id, C.lease_holder == holder)
        .values(lease_holder=None, lease_expires_at=None)
    )


# -- named leases ----------------------------------------------------------------------------------


def take(session: Connection, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the named lease; False when another holder's lease has not expired.

    The first taker inserts the row: two nodes starting at once race there, and the loser's
    commit raises StoreConflict (it does not hold the lease).
    """
    taken = _count(session.execute(
        update(lease_table)
        .where(L.name == name, or_(L.holder == holder, L.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    ))
    if taken:
        return True
    if session.scalar(select(L.name).where(L.name == name)) is not None:
        return False
    session.execute(insert(lease_table).values(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
    return True


def release(session: Connection, name: str, holder: str) -> None:
    session.execute(delete(lease_table).where(L.name == name, L.holder == holder))


def holder(session: Connection, name: str) -> tuple[str, datetime] | None:
    """(holder, expires_at) of the named lease, or None."""
    row = session.execute(select(L.holder, L.expires_at).where(L.name == name)).first()
    return None if row is None else (row[0], row[1])


# -- nodes -----------------------------------------------------------------------------------------


def beat(session: Connection, name: str, *, host: str, version: str, pid: int, now: datetime) -> None:
    """Record that node ``name`` is alive now."""
    beaten = session.execute(
        update(node_table).where(N.name == name).values(host=host, version=version, pid=pid, heartbeat_at=now)
    )
    if not _count(beaten):
        session.execute(insert(node_table).values(name=name, host=host, version=version, pid=pid, started_at=now,
                                                  heartbeat_at=now))


def nodes(session: Connection) -> list[Node]:
    return [Node(**row._mapping) for row in session.execute(select(node_table).order_by(N.name))]


def heartbeats(session: Connection, names: Sequence[str]) -> dict[str, datetime]:
    """node name -> its last heartbeat, for the nodes that ever sent one."""
    if not names:
        return {}
    rows = session.execute(select(N.name, N.heartbeat_at).where(N.name.in_(list(names))))
    return {name: at for name, at in rows}
