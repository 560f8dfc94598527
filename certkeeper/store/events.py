"""The audit trail: lifecycle events per certificate (issued, deployed, pruned, ...).

Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certkeeper.store.schema import EventRow


def record(
    session: Session,
    kind: str,
    message: str,
    *,
    at: datetime,
    certificate_id: str | None = None,
    revision_id: int | None = None,
    node: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        EventRow(
            at=at, kind=kind, certificate_id=certificate_id, revision_id=revision_id, node=node, message=message,
            details=details or {},
        )
    )


def recent(session: Session, certificate_id: str | None = None, limit: int = 50) -> list[EventRow]:
    """The newest events first (of one certificate, or of all)."""
    query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
    if certificate_id is not None:
        query = query.where(EventRow.certificate_id == certificate_id)
    return list(session.scalars(query))
