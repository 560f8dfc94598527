"""The alert outbox's rows: one per (notifier, dedupe key), delivered, waiting or dead.

The delivery policy (dedupe, retry, backoff, pacing) is :mod:`certkeeper.outbox`'s. Every function
takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, and_, delete, func, select, update
from sqlalchemy.orm import Session

from certkeeper.store.schema import OutboxRow


def exists(session: Session, notifier: str, dedupe_key: str) -> bool:
    """Whether this alert was ever queued for ``notifier`` (delivered, waiting or dead)."""
    return session.scalar(
        select(OutboxRow.id).where(OutboxRow.notifier == notifier, OutboxRow.dedupe_key == dedupe_key)
    ) is not None


def add(
    session: Session, *, notifier: str, dedupe_key: str, kind: str, certificate_id: str | None, payload: dict[str, Any],
    now: datetime,
) -> None:
    """Queue one alert, due now; StoreConflict at commit if another process queued it first."""
    session.add(
        OutboxRow(
            notifier=notifier, dedupe_key=dedupe_key, kind=kind, certificate_id=certificate_id, payload=payload,
            created_at=now, attempts=0, next_attempt_at=now, dead=False,
        )
    )


def _waiting(now: datetime) -> tuple[object, ...]:
    return (OutboxRow.delivered_at.is_(None), OutboxRow.dead.is_(False), OutboxRow.next_attempt_at <= now)


def due(session: Session, now: datetime, notifiers: Sequence[str], limit: int) -> list[tuple[int, str, datetime]]:
    """(id, notifier, next_attempt_at) of waiting alerts due now for the configured notifiers."""
    rows = session.execute(
        select(OutboxRow.id, OutboxRow.notifier, OutboxRow.next_attempt_at)
        .where(*_waiting(now), OutboxRow.notifier.in_(list(notifiers)))  # type: ignore[arg-type]
        .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
        .limit(limit)
    )
    return [(row_id, notifier, at) for row_id, notifier, at in rows]


def orphans(session: Session, now: datetime, notifiers: Sequence[str]) -> list[tuple[int, str, datetime]]:
    """(id, notifier, created_at) of waiting alerts whose notifier is not configured."""
    rows = session.execute(
        select(OutboxRow.id, OutboxRow.notifier, OutboxRow.created_at)
        .where(*_waiting(now), OutboxRow.notifier.not_in(list(notifiers)))  # type: ignore[arg-type]
        .order_by(OutboxRow.id)
    )
    return [(row_id, notifier, at) for row_id, notifier, at in rows]


def claim(session: Session, row_id: int, seen_next_attempt_at: datetime, until: datetime) -> bool:
    """Take a due alert for sending (compare-and-set on its due time), so two daemons sharing a
    store never both send it; it is due again at ``until`` if this process dies mid-send."""
    result = session.execute(
        update(OutboxRow)
        .where(
            and_(
                OutboxRow.id == row_id, OutboxRow.delivered_at.is_(None), OutboxRow.dead.is_(False),
                OutboxRow.next_attempt_at == seen_next_attempt_at,
            )
        )
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def get(session: Session, row_id: int) -> OutboxRow | None:
    return session.get(OutboxRow, row_id)


def undelivered(session: Session, *, include_dead: bool, certificate_id: str | None) -> list[OutboxRow]:
    query = select(OutboxRow).where(OutboxRow.delivered_at.is_(None))
    if not include_dead:
        query = query.where(OutboxRow.dead.is_(False))
    if certificate_id is not None:
        query = query.where(OutboxRow.certificate_id == certificate_id)
    return list(session.scalars(query.order_by(OutboxRow.created_at, OutboxRow.id)))


def counts(session: Session) -> dict[str, int]:
    """{"pending": n, "dead": n, "delivered": n}."""
    count = select(func.count(OutboxRow.id))
    undelivered_rows = OutboxRow.delivered_at.is_(None)
    return {
        "pending": session.scalar(count.where(undelivered_rows, OutboxRow.dead.is_(False))) or 0,
        "dead": session.scalar(count.where(undelivered_rows, OutboxRow.dead.is_(True))) or 0,
        "delivered": session.scalar(count.where(OutboxRow.delivered_at.is_not(None))) or 0,
    }


def purge_delivered(session: Session, older_than: datetime) -> int:
    """Delete delivered rows created before ``older_than``; returns how many."""
    result = session.execute(
        delete(OutboxRow).where(OutboxRow.delivered_at.is_not(None), OutboxRow.created_at < older_than)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)
