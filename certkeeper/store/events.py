"""The audit trail: lifecycle events per certificate (issued, deployed, pruned, ...).

Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from certkeeper.store.tables import events as event_table

E = event_table.c


@dataclass(frozen=True)
class Event:
    """One row of the ``events`` table."""

    id: int
    at: datetime
    kind: str
    certificate_id: str | None
    revision_id: int | None
    node: str
    message: str
    details: dict[str, Any]


def record(
    session: Connection,
    kind: str,
    message: str,
    *,
    at: datetime,
    certificate_id: str | None = None,
    revision_id: int | None = None,
    node: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    session.execute(insert(event_table).values(
        at=at, kind=kind, certificate_id=certificate_id, revision_id=revision_id, node=node, message=message,
        details=details or {},
    ))


def recent(session: Connection, certificate_id: str | None = None, limit: int = 50) -> list[Event]:
    """The newest events first (of one certificate, or of all)."""
    query = select(event_table).order_by(E.id.desc()).limit(limit)
    if certificate_id is not None:
        query = query.where(E.certificate_id == certificate_id)
    return [Event(**row._mapping) for row in session.execute(query)]
